//! Which district a stream belongs to, read from the log, for district-scoped reads.
//!
//! A district's own stream names it; a community or unit names it in its first event; a meeting,
//! project or request names its community, whose first event names the district. A stream never
//! changes district, so answers are cached (and the cache is simply cleared when it grows large).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use store::{EventStore, StoreError};
use uuid::Uuid;

/// The most stream → district answers kept.
const CACHE_LIMIT: usize = 100_000;

#[derive(Clone)]
pub(crate) struct DistrictResolver {
    store: Arc<dyn EventStore>,
    cache: Arc<Mutex<HashMap<String, Option<Uuid>>>>,
}

fn uuid_field(data: &serde_json::Value, field: &str) -> Option<Uuid> {
    data.get(field)
        .and_then(|v| v.as_str())
        .and_then(|v| Uuid::parse_str(v).ok())
}

impl DistrictResolver {
    pub(crate) fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            cache: Arc::default(),
        }
    }

    /// The district of `stream`, or `None` when the stream is unknown or names none.
    pub(crate) async fn district_of(&self, stream: &str) -> Result<Option<Uuid>, StoreError> {
        if let Some(known) = self.cached(stream) {
            return Ok(known);
        }
        let district = match domain::ids::parse_stream(stream) {
            Some(("district", id)) => Some(id),
            Some(_) => {
                let first = self.first_data(stream).await?;
                match first {
                    None => None,
                    Some(data) => match uuid_field(&data, "district_id") {
                        Some(district) => Some(district),
                        None => match uuid_field(&data, "community_id") {
                            Some(community) => {
                                let community_stream = format!("community-{community}");
                                self.first_data(&community_stream)
                                    .await?
                                    .and_then(|d| uuid_field(&d, "district_id"))
                            }
                            None => None,
                        },
                    },
                }
            }
            None => None,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            // Only a found district is final; an unknown stream may be created later.
            if district.is_some() {
                cache.insert(stream.to_owned(), district);
            }
        }
        Ok(district)
    }

    fn cached(&self, stream: &str) -> Option<Option<Uuid>> {
        self.cache.lock().ok()?.get(stream).copied()
    }

    async fn first_data(&self, stream: &str) -> Result<Option<serde_json::Value>, StoreError> {
        // Streams are short; the first event is all that is needed.
        let events = self.store.read_stream(stream, 0).await?;
        Ok(events.into_iter().next().map(|e| e.data))
    }
}
