//! The bundle document against the specification's own examples (Appendix A
//! and B of SPIFFE_Trust_Domain_and_Bundle.md, made concrete: the RSA CA
//! certificates `example-ca-{1,2}.der` and the JSON around them were made
//! with Python's `cryptography`, as the spec describes them, independently
//! of this module), round trips, a table of refusals, garbage that never
//! panics, and an independent reading with the `spiffe` crate.

use super::*;
use crate::identity::ca::Ca;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/src/identity/bundle_doc/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn example_roots() -> [CertificateDer<'static>; 2] {
    [
        CertificateDer::from(fixture("example-ca-1.der")),
        CertificateDer::from(fixture("example-ca-2.der")),
    ]
}

#[test]
fn the_specs_appendix_a_bundles_parse_and_their_rotation_adds_a_root() {
    let [one, two] = example_roots();
    let b1 = parse(&fixture("spec-appendix-a-1.json")).unwrap();
    assert_eq!(b1.roots, std::slice::from_ref(&one));
    assert_eq!(b1.sequence, Some(1));
    assert_eq!(b1.refresh_hint, Some(Duration::from_secs(2_419_200)));
    assert_eq!(b1.ignored, 0);
    let b2 = parse(&fixture("spec-appendix-a-2.json")).unwrap();
    assert_eq!(b2.roots, [one, two]);
    assert_eq!(b2.sequence, Some(2));
}

#[test]
fn the_specs_appendix_b_bundle_keeps_its_x509_key_and_ignores_the_jwt_one() {
    let b = parse(&fixture("spec-appendix-b.json")).unwrap();
    assert_eq!(b.roots, [example_roots()[0].clone()]);
    assert_eq!(
        (b.sequence, b.refresh_hint, b.ignored),
        (Some(12_035_488), None, 1)
    );
}

#[test]
fn our_rsa_encoding_is_the_one_python_made() {
    // Same n/e/x5c as the independent encoder of the fixtures.
    let ours: Value =
        serde_json::from_str(&encode(&example_roots(), 2, Duration::from_secs(2_419_200)).unwrap())
            .unwrap();
    let theirs: Value = serde_json::from_slice(&fixture("spec-appendix-a-2.json")).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn ec_roots_round_trip_with_their_parameters() {
    let (a, b) = (
        Ca::generate("other.example").unwrap(),
        Ca::generate("other.example").unwrap(),
    );
    let roots = [a.cert_der().clone(), b.cert_der().clone()];
    let doc = encode(&roots, 7, Duration::from_secs(300)).unwrap();
    let v: Value = serde_json::from_str(&doc).unwrap();
    let k = &v["keys"][0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(k["use"], "x509-svid");
    assert!(k.get("kid").is_none(), "X509-SVID §6.1: no kid");
    assert_eq!(k["x5c"].as_array().unwrap().len(), 1);
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(k["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let back = parse(doc.as_bytes()).unwrap();
    assert_eq!(back.roots, roots);
    assert_eq!(back.sequence, Some(7));
    assert_eq!(back.refresh_hint, Some(Duration::from_secs(300)));
}

/// A document with one x509-svid key of `ca`'s root, as a JSON value.
fn doc_of(ca: &Ca) -> Value {
    serde_json::from_str(&encode(&[ca.cert_der().clone()], 1, Duration::from_secs(60)).unwrap())
        .unwrap()
}

#[test]
fn every_refusal_says_why() {
    let ca = Ca::generate("other.example").unwrap();
    let leaf = ca
        .mint(
            &crate::identity::SpiffeId::workload("other.example", "ns", "sa").unwrap(),
            Duration::from_secs(60),
        )
        .unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = doc_of(&ca);
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let other = Ca::generate("other.example").unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"{\"keys\": [".to_vec(), "not a JSON object"),
        (
            "no keys",
            b"{\"spiffe_sequence\": 1}".to_vec(),
            "missing field `keys`",
        ),
        ("array", b"[]".to_vec(), "not a JSON object"),
        (
            "duplicate keys member",
            br#"{"keys": [], "keys": []}"#.to_vec(),
            "duplicate field `keys`",
        ),
        (
            "negative sequence",
            with(&|v| v["spiffe_sequence"] = json!(-1)),
            "spiffe_sequence: -1 is not an integer",
        ),
        (
            "sequence as a string",
            with(&|v| v["spiffe_sequence"] = json!("1")),
            "spiffe_sequence",
        ),
        (
            "fractional hint",
            with(&|v| v["spiffe_refresh_hint"] = json!(1.5)),
            "spiffe_refresh_hint: 1.5 is not a number of seconds",
        ),
        (
            "hint over a year",
            with(&|v| v["spiffe_refresh_hint"] = json!(MAX_REFRESH_HINT_SECS + 1)),
            "spiffe_refresh_hint",
        ),
        (
            "url-safe base64",
            with(&|v| {
                let s = v["keys"][0]["x5c"][0]
                    .as_str()
                    .unwrap()
                    .replace('+', "-")
                    .replace('/', "_");
                v["keys"][0]["x5c"][0] = json!(s + "-_");
            }),
            "keys[0]: x5c[0] is not standard base64",
        ),
        (
            "not a certificate",
            with(&|v| v["keys"][0]["x5c"][0] = json!(STANDARD.encode(b"hello"))),
            "keys[0]: x5c[0] is not an X.509 certificate",
        ),
        (
            "a leaf, not a CA",
            with(&|v| v["keys"][0]["x5c"][0] = json!(STANDARD.encode(&leaf.chain[0]))),
            "keys[0]: x5c[0] is not a CA certificate",
        ),
        (
            "parameters of another key",
            with(&|v| v["keys"][0]["x"] = doc_of(&other)["keys"][0]["x"].clone()),
            "keys[0]: x does not match the public key",
        ),
        (
            "kty missing",
            with(&|v| {
                v["keys"][0].as_object_mut().unwrap().remove("kty");
            }),
            "keys[0]: an x509-svid key without kty",
        ),
        (
            "a key that is not an object",
            with(&|v| v["keys"] = json!([1])),
            "keys[0]: not a JSON object",
        ),
        (
            "only a jwt-svid key",
            with(&|v| v["keys"][0]["use"] = json!("jwt-svid")),
            "no usable x509-svid key (1 keys ignored)",
        ),
        (
            "empty key set",
            with(&|v| v["keys"] = json!([])),
            "no usable x509-svid key (0",
        ),
        (
            "too many keys",
            with(&|v| v["keys"] = json!(vec![json!({}); MAX_KEYS + 1])),
            "1025 keys, more than",
        ),
        (
            "too many roots",
            with(&|v| v["keys"] = json!(vec![v["keys"][0].clone(); MAX_ROOTS + 1])),
            "65 x509-svid roots",
        ),
    ];
    for (what, bytes, want) in cases {
        let e = parse(&bytes).expect_err(what);
        assert!(e.to_string().contains(want), "{what}: {e}");
    }
    let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    assert_eq!(
        parse(&huge),
        Err(BundleDocError::TooLarge(MAX_DOCUMENT_BYTES + 1))
    );
}

#[test]
fn keys_the_spec_says_to_ignore_are_ignored() {
    let ca = Ca::generate("other.example").unwrap();
    let mut v = doc_of(&ca);
    let good = v["keys"][0].clone();
    let mut unknown_kty = good.clone();
    unknown_kty["kty"] = json!("oct");
    let mut no_x5c = good.clone();
    no_x5c.as_object_mut().unwrap().remove("x5c");
    let mut empty_x5c = good.clone();
    empty_x5c["x5c"] = json!([]);
    let mut extra_x5c = good.clone();
    extra_x5c["x5c"] = json!([good["x5c"][0], "ignored, not even base64!"]);
    let mut no_use = good.clone();
    no_use.as_object_mut().unwrap().remove("use");
    v["keys"] = json!([good, unknown_kty, no_x5c, empty_x5c, extra_x5c, no_use, {"use": "enc"}]);
    // Members the spec does not define are allowed.
    v["something_else"] = json!({"nested": true});
    let b = parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(b.roots, [ca.cert_der().clone(), ca.cert_der().clone()]);
    assert_eq!(b.ignored, 5);
}

/// Independent code reads our document: the `spiffe` crate has no parser
/// of whole SPIFFE bundle documents (its `JwtBundle::from_jwt_authorities`
/// reads jwt-svid JWKS only and requires a `kid`, which an x509-svid key
/// must not have), so the `x5c` values are taken out with plain serde_json
/// and standard base64, and the crate's `X509Bundle` parses the
/// certificates for the trust domain.
#[test]
fn the_spiffe_crate_reads_the_roots_of_our_document() {
    let (a, b) = (
        Ca::generate("other.example").unwrap(),
        Ca::generate("other.example").unwrap(),
    );
    let doc = encode(
        &[a.cert_der().clone(), b.cert_der().clone()],
        3,
        Duration::from_secs(5),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&doc).unwrap();
    let ders: Vec<Vec<u8>> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["use"], "x509-svid");
            STANDARD.decode(k["x5c"][0].as_str().unwrap()).unwrap()
        })
        .collect();
    let td = spiffe::TrustDomain::new("other.example").unwrap();
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    let bundle = spiffe::X509Bundle::from_x509_authorities(td, &refs).unwrap();
    let got: Vec<&[u8]> = bundle.authorities().iter().map(|c| c.as_ref()).collect();
    assert_eq!(got, [a.cert_der().as_ref(), b.cert_der().as_ref()]);
    assert_eq!(v["spiffe_sequence"], 3);
    assert_eq!(v["spiffe_refresh_hint"], 5);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Garbage never panics.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes);
    }

    /// A truncated document is refused, never a panic.
    #[test]
    fn truncated_documents_are_refused(cut in 0usize..1000) {
        let doc = fixture("spec-appendix-a-2.json");
        let cut = cut * doc.len() / 1000;
        prop_assert!(parse(&doc[..cut]).is_err());
    }

    /// A byte changed anywhere: parsed or refused, never a panic; and when
    /// parsed, still within the bounds.
    #[test]
    fn mutated_documents_never_panic(at in 0usize..1000, byte in any::<u8>()) {
        let mut doc = fixture("spec-appendix-b.json");
        let at = at * doc.len() / 1000;
        doc[at] = byte;
        if let Ok(b) = parse(&doc) {
            prop_assert!(!b.roots.is_empty() && b.roots.len() <= MAX_ROOTS);
        }
    }

    /// JSON shapes in place of each member never panic.
    #[test]
    fn odd_values_never_panic(v in prop_oneof![
        Just(json!(null)), Just(json!(-1)), Just(json!(1e300)), Just(json!("x")),
        Just(json!([])), Just(json!({})), Just(json!([[]])), Just(json!(u64::MAX)),
    ], slot in 0usize..6) {
        let ca = Ca::generate("x.example").unwrap();
        let mut d = doc_of(&ca);
        match slot {
            0 => d["keys"] = v,
            1 => d["spiffe_sequence"] = v,
            2 => d["spiffe_refresh_hint"] = v,
            3 => d["keys"][0]["x5c"] = v,
            4 => d["keys"][0]["kty"] = v,
            _ => d["keys"][0]["use"] = v,
        }
        let _ = parse(&serde_json::to_vec(&d).unwrap());
    }
}
