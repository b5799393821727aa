//! What every framework's importer does with its description: parse it, check that it says
//! it describes that framework's model, and name what cannot be imported.

use super::InteropError;
use serde::de::DeserializeOwned;

/// Reads the parsed description `value` as `framework`'s description `T`, after checking its
/// `"framework"` key.
pub(crate) fn read<T: DeserializeOwned>(
    framework: &'static str,
    value: &serde_json::Value,
) -> Result<T, InteropError> {
    let bad = |message: String| error(framework, message);
    match value.get("framework").and_then(serde_json::Value::as_str) {
        Some(f) if f == framework => T::deserialize(value).map_err(|e| bad(e.to_string())),
        Some(other) => Err(bad(format!("it says it describes a {other} model"))),
        None => Err(bad("it has no \"framework\" key".into())),
    }
}

/// A description of `framework` that is wrong in the way `message` says.
pub(crate) fn error(framework: &'static str, message: String) -> InteropError {
    InteropError::Description { framework, message }
}

/// `what` (a feature, tensor or setting) does something this crate cannot score exactly.
pub(crate) fn unsupported(what: impl Into<String>, reason: impl Into<String>) -> InteropError {
    InteropError::Unsupported {
        what: what.into(),
        reason: reason.into(),
    }
}
