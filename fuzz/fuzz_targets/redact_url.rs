//! `lineage::redact_url` on any text never panics and never shows a password: the credentials
//! sqlx would read from the text (the userinfo password, and the `password` and `sslpassword`
//! query parameters, as the `url` crate that sqlx uses parses them) and, built from the fuzzer's
//! parts, a password in each form sqlx accepts (userinfo, query, key=value DSN, quoted or not).

#![no_main]

use libfuzzer_sys::fuzz_target;

/// Asserts `secret`, as written in `text`, is not shown, when it is long enough and occurs once
/// (so it cannot be told apart from the host or another part of the text) and has no `*` (the
/// mask itself).
fn assert_hidden(text: &str, shown: &str, secret: &str) {
    if secret.len() >= 6 && !secret.contains('*') && text.matches(secret).count() == 1 {
        assert!(!shown.contains(secret), "{secret:?} shown: {text:?} -> {shown:?}");
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fuzz_target!(|input: (&str, &str, u8)| {
    let (text, secret, form) = input;
    // Any text.
    let shown = lineage::redact_url(text);
    if let Ok(parsed) = url::Url::parse(text) {
        // `password()` is the password re-encoded; look for it only where the text wrote it so.
        if let Some(password) = parsed.password().filter(|p| text.contains(&format!(":{p}@"))) {
            assert_hidden(text, &shown, password);
        }
        for (key, value) in parsed.query_pairs() {
            if key == "password" || key == "sslpassword" {
                assert_hidden(text, &shown, &value);
            }
        }
    }
    // A password in each form, around the fuzzer's text.
    let built = match form % 5 {
        0 => format!("postgres://app:{}@db.internal:5432/robo", encode(secret)),
        1 => format!("postgres://db.internal/robo?sslmode=require&password={}", encode(secret)),
        2 => format!("postgres://app@db.internal/robo?sslpassword={}&application_name=x", encode(secret)),
        3 => format!(
            "host=db.internal user=app password='{}' dbname=robo",
            secret.replace('\\', "\\\\").replace('\'', "\\'")
        ),
        _ => format!("host=db.internal password={} dbname=robo", encode(secret)),
    };
    // The password as it is written in the text: quoted in the DSN form, encoded in the others.
    let written = if form % 5 == 3 { secret.to_owned() } else { encode(secret) };
    let shown = lineage::redact_url(&built);
    assert_hidden(&built, &shown, &written);
});
