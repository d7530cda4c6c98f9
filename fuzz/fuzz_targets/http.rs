//! What an HTTP server (or a middlebox) sends back: the response head, chunked framing,
//! Content-Range, and the Date header the clock may use.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zos_netboot::clock;
use zos_netboot::fetch::http;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, used))) = http::parse_head(data) {
        assert!(used <= data.len());
        let _ = head.content_length();
        let _ = head.chunked();
        let _ = head.content_range();
        let _ = head.retry_after();
        let _ = http::framing(http::Method::Get, &head);
        if let Some(d) = head.date() {
            let _ = clock::parse_http_date(d);
        }
    }
    // The body as chunked encoding, fed in two pieces at a split the input picks.
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut dec = http::ChunkedDecoder::new();
    let mut out = Vec::new();
    if let Ok(n) = dec.decode(&data[..split], &mut out) {
        assert!(n <= split);
        let rest = &data[n..];
        let _ = dec.decode(rest, &mut out);
    }
    let text = String::from_utf8_lossy(data);
    let _ = http::parse_content_range(&text);
    let _ = clock::parse_http_date(&text);
});
