//! The [`VerifiedApiKey`] extractor.

use std::future::{Ready, ready};
use std::ops::Deref;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use keyward_core::{Error, ErrorCode, VerifiedKey};

use crate::rejection::Rejection;

/// The key that [`KeywardMiddleware`](crate::KeywardMiddleware) verified for this request.
///
/// On a route the middleware does not wrap there is none, and extracting it answers with the
/// catalog's 401 `MISSING_API_KEY`. Use `Option<VerifiedApiKey>` on routes where a key is
/// optional.
///
/// ```
/// use actix_web::Responder;
/// use keyward_actix::VerifiedApiKey;
///
/// async fn whoami(key: VerifiedApiKey) -> impl Responder {
///     format!("{} in workspace {}", key.key_id(), key.workspace_id())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedApiKey(pub Arc<VerifiedKey>);

impl Deref for VerifiedApiKey {
    type Target = VerifiedKey;

    fn deref(&self) -> &VerifiedKey {
        &self.0
    }
}

impl FromRequest for VerifiedApiKey {
    type Error = Rejection;
    type Future = Ready<Result<Self, Rejection>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = req.extensions().get::<Arc<VerifiedKey>>().cloned();
        ready(found.map(Self).ok_or_else(|| {
            Rejection::for_request(
                Error::new(
                    ErrorCode::MissingApiKey,
                    "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                ),
                req,
            )
        }))
    }
}
