//! Property tests: the key format round-trips, the checksum catches every single-character
//! change, and scope covering is a partial order.

use keyward_core::model::{MAX_PERIOD_SECS, MAX_RATE_PER_SEC};
use keyward_core::{
    KeyEnvironment, KeyFormat, KeyId, KeyParseError, LimitSubject, LocalRateLimiter, RateLimitPolicy,
    RateLimitWindow, RateLimiter, Scope, ScopePart, SecretEncoding,
};
use proptest::prelude::*;

fn formats() -> impl Strategy<Value = KeyFormat> {
    ("[a-z][a-z0-9]{0,7}", prop::bool::ANY, 32usize..48).prop_map(|(prefix, hex, bytes)| {
        let enc = if hex { SecretEncoding::Hex } else { SecretEncoding::Base62 };
        KeyFormat::new(&prefix).unwrap().with_encoding(enc).with_secret_bytes(bytes).unwrap()
    })
}

fn envs() -> impl Strategy<Value = KeyEnvironment> {
    prop_oneof![Just(KeyEnvironment::Live), Just(KeyEnvironment::Test)]
}

fn part() -> impl Strategy<Value = ScopePart> {
    prop_oneof![Just(ScopePart::Any), "[a-c]".prop_map(ScopePart::Name)]
}

fn scope() -> impl Strategy<Value = Scope> {
    (part(), part()).prop_map(|(resource, action)| Scope { resource, action })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_keys_round_trip(format in formats(), env in envs()) {
        let key = format.generate(env);
        let text = key.expose_secret();
        prop_assert_eq!(text.len(), format.key_len(env));
        let expected_start = format!("{}_{}_", format.prefix(), env);
        prop_assert!(text.starts_with(&expected_start));
        prop_assert_eq!(format.parse(text).map(|p| p.environment), Ok(env));
    }

    #[test]
    fn any_single_character_change_is_rejected(
        format in formats(),
        env in envs(),
        pos in any::<prop::sample::Index>(),
        replacement in "[ -~]",
    ) {
        let key = format.generate(env);
        let text = key.expose_secret();
        let i = pos.index(text.len());
        let original = &text[i..i + 1];
        prop_assume!(original != replacement);
        let mut changed = text.to_owned();
        changed.replace_range(i..i + 1, &replacement);
        prop_assert!(format.parse(&changed).is_err(), "accepted {} changed at {}", format.prefix(), i);
    }

    #[test]
    fn changes_inside_the_secret_fail_the_checksum(format in formats(), pos in any::<prop::sample::Index>(), c in "[0-9a-f]") {
        // With an in-alphabet character, only the checksum can catch the change.
        let key = format.generate(KeyEnvironment::Live);
        let text = key.expose_secret();
        let start = format.prefix().len() + "_live_".len();
        let end = text.len() - 6;
        let i = start + pos.index(end - start);
        prop_assume!(&text[i..i + 1] != c.as_str());
        let mut changed = text.to_owned();
        changed.replace_range(i..i + 1, &c);
        prop_assert_eq!(format.parse(&changed), Err(KeyParseError::Checksum));
    }

    #[test]
    fn covers_is_reflexive(a in scope()) {
        prop_assert!(a.covers(&a));
    }

    #[test]
    fn covers_is_antisymmetric(a in scope(), b in scope()) {
        if a.covers(&b) && b.covers(&a) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn covers_is_transitive(a in scope(), b in scope(), c in scope()) {
        if a.covers(&b) && b.covers(&c) {
            prop_assert!(a.covers(&c));
        }
    }

    #[test]
    fn scope_text_round_trips(a in scope()) {
        prop_assert_eq!(a.to_string().parse::<Scope>(), Ok(a));
    }
}

fn windows() -> impl Strategy<Value = Vec<RateLimitWindow>> {
    let period = prop_oneof![Just(0u32), Just(1), Just(MAX_PERIOD_SECS), Just(u32::MAX), any::<u32>()];
    let limit = prop_oneof![Just(0u32), Just(1), Just(1_000_000), Just(u32::MAX), any::<u32>()];
    prop::collection::vec(
        (limit, period).prop_map(|(limit, period_secs)| RateLimitWindow { limit, period_secs }),
        0..10,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No policy, accepted by validation or not (stored before a bound existed, built in code),
    /// makes the local limiter panic; and an accepted one never has a zero emission interval.
    #[test]
    fn no_policy_makes_the_limiter_panic(windows in windows()) {
        let policy = RateLimitPolicy::new(windows);
        if policy.validate().is_ok() {
            for w in &policy.windows {
                prop_assert!(u64::from(w.limit) <= MAX_RATE_PER_SEC * u64::from(w.period_secs));
            }
        }
        for w in &policy.windows {
            prop_assert!(!keyward_core::ratelimit::emission_interval(w).is_zero());
        }
        let limiter = LocalRateLimiter::default();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let status = rt.block_on(limiter.check(LimitSubject::Key(KeyId::new()), &policy)).unwrap();
        prop_assert_eq!(status.windows.len(), policy.windows.len());
    }
}

#[test]
fn validation_bounds_the_rate_of_every_window() {
    let ok = RateLimitPolicy::new([RateLimitWindow { limit: 1_000_000, period_secs: 1 }]);
    assert!(ok.validate().is_ok());
    let too_fast = RateLimitPolicy::new([RateLimitWindow { limit: 1_000_001, period_secs: 1 }]);
    assert!(too_fast.validate().is_err());
    let long = RateLimitPolicy::new([RateLimitWindow { limit: u32::MAX, period_secs: MAX_PERIOD_SECS }]);
    assert!(long.validate().is_ok(), "4.3e9 per 31 days is 1,603 per second");
}
