//! Bearer tokens: issued once, stored only as SHA-256 hashes, checked without timing leaks.
//!
//! A token is 32 random bytes, shown once as `lx_` + 64 hex digits. The registry is searched by
//! the token's hash, so the secret itself is never compared; the bootstrap admin token from
//! `LIANXI_ADMIN_TOKEN` is compared by hash in constant time.

use std::sync::Arc;

use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};
use store::tokens::{TokenRecord, TokenRegistry};
use store::{EventStore, StoreError};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::{Principal, Role};

/// The actor id of the bootstrap admin token: fixed, so its events are traceable across restarts.
pub const BOOTSTRAP_ADMIN_ID: Uuid = Uuid::from_u128(0x6c69_616e_7869_0000_0000_0000_0000_0001);

/// Why a token could not be issued or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No token, an unknown token, or a malformed header (401).
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// The issuer may not issue this token (403).
    #[error("{0}")]
    Forbidden(String),
    /// The role and scope do not fit together, or the scope does not exist (422).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues and authenticates tokens against a registry, plus the optional bootstrap admin token.
#[derive(Clone)]
pub struct TokenService {
    registry: Arc<dyn TokenRegistry>,
    store: Arc<dyn EventStore>,
    admin_hash: Option<[u8; 32]>,
}

/// The SHA-256 of a token's text, as lowercase hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl TokenService {
    /// `admin_token` is `LIANXI_ADMIN_TOKEN`, when set; only its hash is kept.
    pub fn new(
        registry: Arc<dyn TokenRegistry>,
        store: Arc<dyn EventStore>,
        admin_token: Option<&str>,
    ) -> Self {
        let admin_hash = admin_token
            .filter(|t| !t.is_empty())
            .map(|t| Sha256::digest(t.as_bytes()).into());
        Self {
            registry,
            store,
            admin_hash,
        }
    }

    /// The principal behind an `Authorization` header value (`Bearer <token>`).
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, TokenError> {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(TokenError::Unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(admin) = &self.admin_hash {
            if bool::from(admin.ct_eq(&digest)) {
                return Ok(Principal {
                    actor_id: BOOTSTRAP_ADMIN_ID,
                    name: "bootstrap admin".to_owned(),
                    role: Role::Admin,
                    scope: None,
                });
            }
        }
        let record = self
            .registry
            .find_token(&hex::encode(digest))
            .await?
            .ok_or(TokenError::Unauthorized)?;
        let role: Role = record.role.parse().map_err(|_| TokenError::Unauthorized)?;
        Ok(Principal {
            actor_id: record.id,
            name: record.name,
            role,
            scope: record.scope,
        })
    }

    /// Issues a token for `role` limited to `scope`, on behalf of `issuer` (`None`: the operator
    /// at the command line). Returns the token text, which is never stored.
    pub async fn issue(
        &self,
        issuer: Option<&Principal>,
        role: Role,
        scope: Option<Uuid>,
        name: &str,
    ) -> Result<String, TokenError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(TokenError::Invalid {
                field: "name",
                message: "must be 1 to 200 characters, without control characters".into(),
            });
        }
        let scope_district = self.check_scope(role, scope).await?;
        if let Some(issuer) = issuer {
            match issuer.role {
                Role::Admin => {}
                Role::DistrictAdmin if role != Role::Admin && scope_district == issuer.scope => {}
                Role::DistrictAdmin => {
                    return Err(TokenError::Forbidden(
                        "a district_admin issues tokens only within its own district".into(),
                    ))
                }
                other => {
                    return Err(TokenError::Forbidden(format!(
                        "the {other} role may not issue tokens"
                    )))
                }
            }
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("lx_{}", hex::encode(secret));
        self.registry
            .insert_token(TokenRecord {
                id: Uuid::now_v7(),
                hash: hash_token(&token),
                role: role.as_str().to_owned(),
                scope,
                name: name.to_owned(),
                created_at: Utc::now(),
            })
            .await?;
        Ok(token)
    }

    /// Checks that `scope` fits `role` and names something registered; returns its district.
    async fn check_scope(
        &self,
        role: Role,
        scope: Option<Uuid>,
    ) -> Result<Option<Uuid>, TokenError> {
        let (kind, id) = match (role.scope_kind(), scope) {
            (None, None) => return Ok(None),
            (None, Some(_)) => {
                return Err(TokenError::Invalid {
                    field: "scope",
                    message: "the admin role takes no scope".into(),
                })
            }
            (Some(kind), None) => {
                return Err(TokenError::Invalid {
                    field: "scope",
                    message: format!("the {role} role needs the id of a {kind} as its scope"),
                })
            }
            (Some(kind), Some(id)) => (kind, id),
        };
        let events = self.store.read_stream(&format!("{kind}-{id}"), 0).await?;
        let first = events.first().ok_or_else(|| TokenError::Invalid {
            field: "scope",
            message: format!("no {kind} {id} is registered"),
        })?;
        if kind == "district" {
            return Ok(Some(id));
        }
        // A community or unit names its district in its first event.
        let district = first
            .data
            .get("district_id")
            .and_then(|d| d.as_str())
            .and_then(|d| Uuid::parse_str(d).ok());
        Ok(district)
    }
}
