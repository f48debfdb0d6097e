//! The outer layers: protobuf bytes ⇄ zstd ⇄ base64 text.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{Limits, WireError};

/// The largest zstd window a decoder accepts, as a power of two: 16 MiB, the decompressed-size
/// cap. Without it a frame header alone could make the decoder reserve a 128 MiB window.
const WINDOW_LOG_MAX: u32 = 24;

/// zstd-compresses `raw` and base64-encodes the result.
pub(crate) fn seal(
    compressor: &mut zstd::bulk::Compressor<'_>,
    raw: &[u8],
) -> Result<String, WireError> {
    let compressed = compressor.compress(raw).map_err(WireError::Compress)?;
    Ok(STANDARD.encode(compressed))
}

/// Base64-decodes and decompresses a body, enforcing the size limits.
pub(crate) fn open(body: &str, limits: &Limits) -> Result<Vec<u8>, WireError> {
    if body.len() > limits.max_body_bytes {
        return Err(WireError::BodyTooLarge {
            found: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let compressed = STANDARD.decode(body)?;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(compressed.as_slice())
        .map_err(WireError::Decompress)?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(WireError::Decompress)?;
    let cap = limits.max_decompressed_bytes;
    // Read one byte past the cap to tell "exactly at the cap" from "over it".
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(cap));
    decoder
        .take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(WireError::Decompress)?;
    if out.len() > cap {
        return Err(WireError::DecompressedTooLarge { limit: cap });
    }
    Ok(out)
}
