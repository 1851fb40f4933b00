//! The CRC frame decoder over arbitrary bytes: never panics, never reads
//! past the buffer, and whatever it accepts re-encodes to the same bytes.
#![no_main]

use auditlog::internals::frame::{read_frame, write_frame, FRAME_HEADER, MAX_FRAME_BODY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pos = 0usize;
    // Walk the buffer the way a segment scan does.
    while pos < data.len() {
        match read_frame(&data[pos..]) {
            Ok(f) => {
                assert!(f.size >= FRAME_HEADER + 1 && f.size <= data.len() - pos);
                assert!(f.payload.len() < MAX_FRAME_BODY);
                let mut again = Vec::new();
                write_frame(&mut again, f.rec_type, f.payload);
                assert_eq!(
                    &again[..],
                    &data[pos..pos + f.size],
                    "frame does not round-trip"
                );
                pos += f.size;
            }
            Err(_) => break,
        }
    }
});
