//! Scopes: `resource:action`, with `*` standing for any resource or any action.
//!
//! `*` alone is the same scope as `*:*`. A scope *covers* another when every request the other
//! allows is allowed by it; covering is a partial order, and a key may only create or widen
//! keys whose scopes its own scopes cover.
//!
//! ```
//! use keyward_core::{Scope, ScopeSet};
//!
//! let read_all: Scope = "*:read".parse().unwrap();
//! assert!(read_all.allows(&"products:read".parse().unwrap()));
//! assert!(!read_all.allows(&"products:write".parse().unwrap()));
//!
//! let mine: ScopeSet = "products:*,orders:read".parse().unwrap();
//! assert!(mine.covers(&"products:write".parse().unwrap()));
//! assert!(!mine.covers(&"orders:*".parse().unwrap()));
//! assert_eq!("*".parse::<Scope>().unwrap(), "*:*".parse::<Scope>().unwrap());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One side of a scope: a name, or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopePart {
    /// `*`: any value.
    Any,
    /// A concrete name: ASCII letters, digits, `_`, `-` or `.`.
    Name(String),
}

impl ScopePart {
    fn covers(&self, other: &ScopePart) -> bool {
        match (self, other) {
            (ScopePart::Any, _) => true,
            (ScopePart::Name(a), ScopePart::Name(b)) => a == b,
            (ScopePart::Name(_), ScopePart::Any) => false,
        }
    }
}

impl fmt::Display for ScopePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopePart::Any => f.write_str("*"),
            ScopePart::Name(n) => f.write_str(n),
        }
    }
}

/// A permission `resource:action`. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// What the scope is about, e.g. `keys`.
    pub resource: ScopePart,
    /// What may be done, e.g. `read`.
    pub action: ScopePart,
}

/// Why a string is not a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeParseError {
    /// Empty string.
    #[error("a scope must not be empty")]
    Empty,
    /// No `:` (and not `*`).
    #[error("scope `{0}` must have the form `resource:action` (or be `*`)")]
    MissingColon(String),
    /// More than one `:`.
    #[error("scope `{0}` has more than one `:`")]
    TooManyColons(String),
    /// One side is empty.
    #[error("scope `{0}` has an empty resource or action")]
    EmptyPart(String),
    /// A character outside `A-Za-z0-9_-.`, or `*` mixed with other characters.
    #[error("scope `{0}` may only use letters, digits, `_`, `-`, `.` or a lone `*` on each side")]
    InvalidCharacter(String),
    /// Longer than 128 characters.
    #[error("a scope may be at most 128 characters long")]
    TooLong,
}

impl Scope {
    /// `*:*`, which allows everything.
    pub fn any() -> Self {
        Scope { resource: ScopePart::Any, action: ScopePart::Any }
    }

    /// Whether this scope covers `other`: everything `other` allows, this allows too.
    pub fn covers(&self, other: &Scope) -> bool {
        self.resource.covers(&other.resource) && self.action.covers(&other.action)
    }

    /// Whether a key with this scope may perform `required`. The same as [`Scope::covers`].
    pub fn allows(&self, required: &Scope) -> bool {
        self.covers(required)
    }
}

impl FromStr for Scope {
    type Err = ScopeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ScopeParseError::Empty);
        }
        if s.len() > 128 {
            return Err(ScopeParseError::TooLong);
        }
        if s == "*" {
            return Ok(Scope::any());
        }
        let mut parts = s.split(':');
        let (Some(resource), Some(action)) = (parts.next(), parts.next()) else {
            return Err(ScopeParseError::MissingColon(s.to_owned()));
        };
        if parts.next().is_some() {
            return Err(ScopeParseError::TooManyColons(s.to_owned()));
        }
        let part = |p: &str| -> Result<ScopePart, ScopeParseError> {
            if p.is_empty() {
                return Err(ScopeParseError::EmptyPart(s.to_owned()));
            }
            if p == "*" {
                return Ok(ScopePart::Any);
            }
            if p.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')) {
                Ok(ScopePart::Name(p.to_owned()))
            } else {
                Err(ScopeParseError::InvalidCharacter(s.to_owned()))
            }
        };
        Ok(Scope { resource: part(resource)?, action: part(action)? })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.resource, &self.action) {
            (ScopePart::Any, ScopePart::Any) => f.write_str("*"),
            (r, a) => write!(f, "{r}:{a}"),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The scopes of a key: sorted, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Scope>", into = "Vec<Scope>")]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// An empty set, which allows nothing that needs a scope.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether some scope of the set allows `required`.
    pub fn allows(&self, required: &Scope) -> bool {
        self.0.iter().any(|s| s.allows(required))
    }

    /// Whether some scope of the set covers `other`.
    pub fn covers(&self, other: &Scope) -> bool {
        self.0.iter().any(|s| s.covers(other))
    }

    /// Whether every scope of `other` is covered by this set.
    pub fn covers_all(&self, other: &ScopeSet) -> bool {
        other.0.iter().all(|s| self.covers(s))
    }

    /// The scopes of `other` that this set does not cover.
    pub fn uncovered<'a>(&self, other: &'a ScopeSet) -> Vec<&'a Scope> {
        other.0.iter().filter(|s| !self.covers(s)).collect()
    }
}

impl From<Vec<Scope>> for ScopeSet {
    fn from(mut v: Vec<Scope>) -> Self {
        v.sort();
        v.dedup();
        Self(v)
    }
}

impl From<ScopeSet> for Vec<Scope> {
    fn from(s: ScopeSet) -> Self {
        s.0
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeParseError;

    /// Parses a comma- or space-separated list; an empty string is the empty set.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split([',', ' ']).filter(|p| !p.is_empty()).map(str::parse).collect()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Scope {
        x.parse().unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(s("products:*").allows(&s("products:read")));
        assert!(!s("products:*").allows(&s("orders:read")));
        assert!(s("*:read").allows(&s("orders:read")));
        assert!(!s("*:read").allows(&s("orders:write")));
        assert!(s("*").allows(&s("anything:goes")));
        assert!(!s("products:read").covers(&s("products:*")));
        assert!(s("products:*").covers(&s("products:*")));
        assert!(!s("*:read").covers(&s("products:*")));
    }

    #[test]
    fn parse_errors_are_specific() {
        assert_eq!("".parse::<Scope>(), Err(ScopeParseError::Empty));
        assert!(matches!("keys".parse::<Scope>(), Err(ScopeParseError::MissingColon(_))));
        assert!(matches!("a:b:c".parse::<Scope>(), Err(ScopeParseError::TooManyColons(_))));
        assert!(matches!(":read".parse::<Scope>(), Err(ScopeParseError::EmptyPart(_))));
        assert!(matches!("keys:".parse::<Scope>(), Err(ScopeParseError::EmptyPart(_))));
        assert!(matches!("ke ys:read".parse::<Scope>(), Err(ScopeParseError::InvalidCharacter(_))));
        assert!(matches!("keys:re*".parse::<Scope>(), Err(ScopeParseError::InvalidCharacter(_))));
        assert_eq!("x".repeat(129).parse::<Scope>(), Err(ScopeParseError::TooLong));
    }

    #[test]
    fn sets_sort_dedup_and_round_trip() {
        let set: ScopeSet = "b:read a:write,b:read".parse().unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.to_string(), "a:write b:read");
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["a:write","b:read"]"#);
        assert_eq!(serde_json::from_str::<ScopeSet>(&json).unwrap(), set);
        assert!(serde_json::from_str::<ScopeSet>(r#"["nope"]"#).is_err());
        let wide: ScopeSet = "keys:*".parse().unwrap();
        assert!(wide.covers_all(&set.iter().filter(|_| false).cloned().collect()));
        assert_eq!(wide.uncovered(&set).len(), 2);
    }
}
