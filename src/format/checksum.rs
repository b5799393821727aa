//! The chunked section checksum (see the module docs of [`crate::format`]).

use super::CHECKSUM_CHUNK;
use rayon::prelude::*;
use std::sync::OnceLock;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// XXH3-64 of one all-zero chunk, so that holes need not be hashed byte by byte.
fn zero_chunk_digest() -> u64 {
    static DIGEST: OnceLock<u64> = OnceLock::new();
    *DIGEST.get_or_init(|| xxh3_64(&vec![0u8; CHECKSUM_CHUNK]))
}

/// The checksum of bytes held in memory (or in a map); chunks hashed in parallel.
pub fn checksum(bytes: &[u8]) -> u64 {
    let digests: Vec<u64> = bytes.par_chunks(CHECKSUM_CHUNK).map(xxh3_64).collect();
    let mut outer = Xxh3::new();
    for d in digests {
        outer.update(&d.to_le_bytes());
    }
    outer.digest()
}

/// The same checksum computed from bytes fed in order, where long zero runs cost almost nothing.
#[derive(Clone)]
pub struct StreamingChecksum {
    outer: Xxh3,
    chunk: Xxh3,
    in_chunk: usize,
    total: u64,
}

impl StreamingChecksum {
    pub fn new() -> Self {
        StreamingChecksum {
            outer: Xxh3::new(),
            chunk: Xxh3::new(),
            in_chunk: 0,
            total: 0,
        }
    }

    fn close_chunk(&mut self) {
        self.outer.update(&self.chunk.digest().to_le_bytes());
        self.chunk = Xxh3::new();
        self.in_chunk = 0;
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (CHECKSUM_CHUNK - self.in_chunk).min(bytes.len());
            self.chunk.update(&bytes[..take]);
            self.in_chunk += take;
            bytes = &bytes[take..];
            if self.in_chunk == CHECKSUM_CHUNK {
                self.close_chunk();
            }
        }
    }

    /// Feeds `n` zero bytes.
    pub fn update_zeros(&mut self, mut n: u64) {
        static ZEROS: [u8; 65_536] = [0; 65_536];
        while n > 0 {
            if self.in_chunk == 0 && n >= CHECKSUM_CHUNK as u64 {
                self.outer.update(&zero_chunk_digest().to_le_bytes());
                self.total += CHECKSUM_CHUNK as u64;
                n -= CHECKSUM_CHUNK as u64;
                continue;
            }
            let room = (CHECKSUM_CHUNK - self.in_chunk).min(ZEROS.len()) as u64;
            let take = room.min(n) as usize;
            self.update(&ZEROS[..take]);
            n -= take as u64;
        }
    }

    pub fn finish(mut self) -> u64 {
        if self.in_chunk > 0 {
            self.close_chunk();
        }
        self.outer.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_matches_whole_with_zero_runs() {
        let len = 3 * CHECKSUM_CHUNK + 12_345;
        let mut bytes = vec![0u8; len];
        for (i, b) in bytes.iter_mut().enumerate().take(1000) {
            *b = i as u8 | 1;
        }
        let tail = len - 5000;
        for (i, b) in bytes[tail..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let mut s = StreamingChecksum::new();
        s.update(&bytes[..1000]);
        s.update_zeros((tail - 1000) as u64);
        s.update(&bytes[tail..]);
        assert_eq!(s.finish(), checksum(&bytes));
        assert_ne!(checksum(&bytes[..len - 1]), checksum(&bytes));
    }
}
