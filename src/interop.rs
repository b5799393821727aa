//! Import from and export to safetensors + JSON spec (placeholder, filled below).
