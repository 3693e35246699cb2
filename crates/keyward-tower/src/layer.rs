//! [`KeywardLayer`]: what a route requires from a key, and the verifier that checks it.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;
use keyward_core::{IpNet, Requirements, Scope, TrustedProxies, Verifier};
use tower_layer::Layer;

use crate::service::Keyward;

/// Picks the resource a request touches, checked against the key's resource restrictions.
///
/// Implemented for every `Fn(&http::request::Parts) -> Option<String>` closure.
pub trait ResourceFrom: Send + Sync + 'static {
    /// The resource `request` touches; `None` when it touches no restricted resource.
    fn resource(&self, request: &Parts) -> Option<String>;
}

impl<F> ResourceFrom for F
where
    F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
{
    fn resource(&self, request: &Parts) -> Option<String> {
        self(request)
    }
}

/// Reads the resource from a request header.
#[derive(Debug, Clone)]
struct ResourceHeader(HeaderName);

impl ResourceFrom for ResourceHeader {
    fn resource(&self, request: &Parts) -> Option<String> {
        let value = request.headers.get(&self.0)?.to_str().ok()?.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }
}

/// The per-layer settings every [`Keyward`] service made by one layer shares.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) verifier: Verifier,
    pub(crate) requirements: Arc<Requirements>,
    pub(crate) resource: Option<Arc<dyn ResourceFrom>>,
    pub(crate) bearer_header: HeaderName,
    pub(crate) api_key_header: HeaderName,
    pub(crate) trusted_proxies: Arc<TrustedProxies>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("verifier", &self.verifier)
            .field("requirements", &self.requirements)
            .field("resource", &self.resource.as_ref().map(|_| "ResourceFrom"))
            .field("bearer_header", &self.bearer_header)
            .field("api_key_header", &self.api_key_header)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

/// Applies [`Keyward`] to a service: every request must present a key that passes the
/// [`Verifier`] with this layer's requirements.
///
/// The header names (`Authorization`/`X-API-Key` by default) come from the verifier's
/// [`VerifierConfig`](keyward_core::VerifierConfig).
///
/// ```
/// # fn demo(verifier: keyward_core::Verifier) {
/// use keyward_tower::KeywardLayer;
///
/// let layer = KeywardLayer::new(verifier)
///     .require_scope("orders:read".parse().unwrap())
///     .cost(1)
///     .resource_header(http::HeaderName::from_static("x-project-id"));
/// # let _ = layer; }
/// ```
#[derive(Clone, Debug)]
pub struct KeywardLayer {
    settings: Settings,
}

impl KeywardLayer {
    /// A layer that requires a valid key and nothing more.
    ///
    /// # Panics
    ///
    /// When the verifier's configured header names are not valid HTTP header names.
    pub fn new(verifier: Verifier) -> Self {
        let config = verifier.config();
        let header = |name: &str| {
            HeaderName::try_from(name).unwrap_or_else(|_| panic!("`{name}` is not a valid header name"))
        };
        let bearer_header = header(&config.bearer_header);
        let api_key_header = header(&config.api_key_header);
        Self {
            settings: Settings {
                verifier,
                requirements: Arc::new(Requirements::default()),
                resource: None,
                bearer_header,
                api_key_header,
                trusted_proxies: Arc::default(),
            },
        }
    }

    /// Also requires `scope`.
    pub fn require_scope(self, scope: Scope) -> Self {
        self.require_scopes([scope])
    }

    /// Also requires every one of `scopes`.
    pub fn require_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Arc::make_mut(&mut self.settings.requirements).scopes.extend(scopes);
        self
    }

    /// Charges `credits` per request to keys that use credits (0, the default, charges nothing).
    pub fn cost(mut self, credits: u32) -> Self {
        Arc::make_mut(&mut self.settings.requirements).cost = credits;
        self
    }

    /// Checks the key's resource restrictions against the resource `f` picks from the request.
    pub fn resource_from(mut self, f: impl ResourceFrom) -> Self {
        self.settings.resource = Some(Arc::new(f));
        self
    }

    /// Checks the key's resource restrictions against the value of the `name` request header.
    pub fn resource_header(self, name: HeaderName) -> Self {
        self.resource_from(ResourceHeader(name))
    }

    /// Believes `Forwarded` / `X-Forwarded-For` from these proxies (none by default: the
    /// headers are ignored), for the client address checked against IP allowlists. The peer
    /// address comes from `axum::extract::ConnectInfo<SocketAddr>` (feature `axum`; serve with
    /// `into_make_service_with_connect_info`) or a `SocketAddr` in the request's extensions;
    /// without either the address is unknown, and keys with an allowlist are refused (403
    /// `IP_NOT_ALLOWED`). See [`TrustedProxies`].
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.settings.trusted_proxies = Arc::new(TrustedProxies::new(proxies));
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.settings.verifier
    }

    /// What every request must satisfy (the resource is filled in per request).
    pub fn requirements(&self) -> &Requirements {
        &self.settings.requirements
    }
}

impl<S> Layer<S> for KeywardLayer {
    type Service = Keyward<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Keyward::from_settings(inner, Arc::new(self.settings.clone()))
    }
}
