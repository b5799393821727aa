//! What a fit learns from: the interactions, optionally a validation set and side features.

use super::features::Features;
use super::ids::Id;

/// Training input for [`super::DeepFMBuilder::fit_interactions`]: `(users[k], items[k],
/// ratings[k])` triples, plus optional side features and an explicit validation set.
///
/// ```
/// use deepfm::api::{DeepFM, Features, Interactions};
/// # let users: Vec<u32> = (0..400).map(|i| i % 20).collect();
/// # let items: Vec<u32> = (0..400).map(|i| (i * 7) % 30).collect();
/// # let ratings: Vec<f32> = (0..400).map(|i| 1.0 + (i % 5) as f32).collect();
/// let mut genres = Features::new().multi_hot("genres", deepfm::Pooling::Mean);
/// for item in 0..30u32 {
///     let list = if item % 2 == 0 { vec!["Comedy"] } else { vec!["Drama", "War"] };
///     genres.insert(item, vec![list.into()])?;
/// }
/// let data = Interactions::new(&users[..300], &items[..300], &ratings[..300])
///     .item_features(&genres)
///     .validation(&users[300..], &items[300..], &ratings[300..]);
/// let model = DeepFM::builder()
///     .embedding_dim(8)
///     .deep_layers(&[16])
///     .epochs(3)
///     .patience(Some(1)) // early stopping on the validation set given
///     .fit_interactions(data)?;
/// assert_eq!(model.model().spec().fields.len(), 3); // user, item, item.genres
/// # Ok::<(), deepfm::api::ApiError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Interactions<'a, U: Id, I: Id> {
    pub(crate) users: &'a [U],
    pub(crate) items: &'a [I],
    pub(crate) ratings: &'a [f32],
    pub(crate) valid: Option<(&'a [U], &'a [I], &'a [f32])>,
    pub(crate) user_features: Option<&'a Features<U>>,
    pub(crate) item_features: Option<&'a Features<I>>,
}

impl<'a, U: Id, I: Id> Interactions<'a, U, I> {
    /// The training triples.
    pub fn new(users: &'a [U], items: &'a [I], ratings: &'a [f32]) -> Self {
        Interactions {
            users,
            items,
            ratings,
            valid: None,
            user_features: None,
            item_features: None,
        }
    }

    /// Validation triples: the loss reported each epoch and, with `patience`, early stopping
    /// (instead of holding out `valid_fraction` of the training triples).
    pub fn validation(mut self, users: &'a [U], items: &'a [I], ratings: &'a [f32]) -> Self {
        self.valid = Some((users, items, ratings));
        self
    }

    /// Side features of the users.
    pub fn user_features(mut self, features: &'a Features<U>) -> Self {
        self.user_features = Some(features);
        self
    }

    /// Side features of the items.
    pub fn item_features(mut self, features: &'a Features<I>) -> Self {
        self.item_features = Some(features);
        self
    }
}
