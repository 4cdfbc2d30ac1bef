//! Deterministic pseudo-random layer content, written as a real gzip'd tar without holding it
//! in memory.
//!
//! The tar holds one regular file of `size` seeded random bytes. Random data does not compress,
//! so the gzip stream uses stored (uncompressed) deflate blocks: valid gzip that any client can
//! decompress, at memory-bandwidth speed.

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

/// xoshiro256** seeded through splitmix64: fast, and the same bytes for the same seed forever.
pub(crate) struct SeededBytes {
    state: [u64; 4],
}

pub(crate) fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SeededBytes {
    pub(crate) fn new(seed: u64) -> SeededBytes {
        let mut next = seed;
        let mut state = [0u64; 4];
        for word in &mut state {
            next = splitmix64(next);
            *word = next;
        }
        SeededBytes { state }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Fills `buffer`; consecutive calls continue one stream only when every buffer but the
    /// last has a length divisible by 8 (the layer writer uses fixed 32 KiB chunks).
    pub(crate) fn fill(&mut self, buffer: &mut [u8]) {
        let mut words = buffer.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let tail_len = tail.len();
        tail.copy_from_slice(&last[..tail_len]);
    }
}

const CRC32_TABLES: [[u32; 256]; 8] = crc32_tables();

const fn crc32_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut byte = 0;
    while byte < 256 {
        let mut table = 1;
        while table < 8 {
            let previous = tables[table - 1][byte];
            tables[table][byte] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            table += 1;
        }
        byte += 1;
    }
    tables
}

/// CRC-32 (IEEE, as gzip uses), slicing by 8.
#[derive(Default)]
pub(crate) struct Crc32 {
    crc: u32,
}

impl Crc32 {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let t = &CRC32_TABLES;
        let mut crc = !self.crc;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let low = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ crc;
            let high = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            crc = t[7][(low & 0xff) as usize]
                ^ t[6][((low >> 8) & 0xff) as usize]
                ^ t[5][((low >> 16) & 0xff) as usize]
                ^ t[4][(low >> 24) as usize]
                ^ t[3][(high & 0xff) as usize]
                ^ t[2][((high >> 8) & 0xff) as usize]
                ^ t[1][((high >> 16) & 0xff) as usize]
                ^ t[0][(high >> 24) as usize];
        }
        for &byte in chunks.remainder() {
            crc = (crc >> 8) ^ t[0][((crc ^ byte as u32) & 0xff) as usize];
        }
        self.crc = !crc;
    }

    pub(crate) fn value(&self) -> u32 {
        self.crc
    }
}

/// What writing a layer produced.
pub(crate) struct LayerDigests {
    /// `sha256:...` of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub(crate) diff_id: String,
}

const RANDOM_CHUNK: usize = 32 * 1024;

/// Writes gzip(tar(one file of `size` random bytes from `seed`)) to `out`.
pub(crate) fn write_layer(seed: u64, size: u64, out: &mut impl Write) -> io::Result<LayerDigests> {
    let mut gzip = StoredGzip::start(out)?;
    gzip.write_tar_piece(&tar_header(&format!("layer-{seed}.bin"), size)?)?;
    let mut random = SeededBytes::new(seed);
    let mut chunk = vec![0u8; RANDOM_CHUNK];
    let mut remaining = size;
    while remaining > 0 {
        let length = remaining.min(RANDOM_CHUNK as u64) as usize;
        random.fill(&mut chunk[..length]);
        gzip.write_tar_piece(&chunk[..length])?;
        remaining -= length as u64;
    }
    let padding = (512 - (size % 512) as usize) % 512;
    // Padding to a 512-byte record, then the two zero records that end an archive.
    gzip.write_tar_piece(&vec![0u8; padding + 1024])?;
    gzip.finish()
}

/// A gzip member made of stored deflate blocks, one per piece.
struct StoredGzip<'a, W: Write> {
    out: &'a mut W,
    crc: Crc32,
    tar_digest: Sha256,
    tar_length: u64,
}

impl<'a, W: Write> StoredGzip<'a, W> {
    fn start(out: &'a mut W) -> io::Result<Self> {
        // magic, deflate, no flags, mtime 0, no extra flags, OS unknown
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        Ok(StoredGzip {
            out,
            crc: Crc32::default(),
            tar_digest: Sha256::new(),
            tar_length: 0,
        })
    }

    fn write_tar_piece(&mut self, piece: &[u8]) -> io::Result<()> {
        for block in piece.chunks(u16::MAX as usize) {
            let length = block.len() as u16;
            // BFINAL=0, BTYPE=00 (stored); LEN and its one's complement NLEN.
            let mut header = [0u8; 5];
            header[1..3].copy_from_slice(&length.to_le_bytes());
            header[3..5].copy_from_slice(&(!length).to_le_bytes());
            self.out.write_all(&header)?;
            self.out.write_all(block)?;
        }
        self.crc.update(piece);
        self.tar_digest.update(piece);
        self.tar_length += piece.len() as u64;
        Ok(())
    }

    fn finish(self) -> io::Result<LayerDigests> {
        // An empty final stored block, then CRC-32 and length mod 2^32 of the data.
        self.out.write_all(&[1, 0, 0, 0xff, 0xff])?;
        self.out.write_all(&self.crc.value().to_le_bytes())?;
        self.out
            .write_all(&(self.tar_length as u32).to_le_bytes())?;
        Ok(LayerDigests {
            diff_id: format!("sha256:{}", hex::encode(self.tar_digest.finalize())),
        })
    }
}

/// A ustar header for a regular file, owned by root, mode 0644, mtime 0.
fn tar_header(name: &str, size: u64) -> io::Result<[u8; 512]> {
    if name.len() > 100 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tar name {name:?} is over 100 bytes"),
        ));
    }
    if size >= 1 << 33 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("layer size {size} does not fit a ustar header (8 GiB limit)"),
        ));
    }
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let mut field = |offset: usize, text: &str| {
        header[offset..offset + text.len()].copy_from_slice(text.as_bytes())
    };
    field(100, "0000644\0");
    field(108, "0000000\0");
    field(116, "0000000\0");
    field(124, &format!("{size:011o}\0"));
    field(136, "00000000000\0");
    field(148, "        ");
    field(156, "0");
    field(257, "ustar\0");
    field(263, "00");
    field(265, "root");
    field(297, "root");
    let checksum: u32 = header.iter().map(|&byte| byte as u32).sum();
    header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_check_value() {
        let mut crc = Crc32::default();
        crc.update(b"123456789");
        assert_eq!(crc.value(), 0xCBF4_3926);
        let mut split = Crc32::default();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.value(), 0xCBF4_3926);
    }

    #[test]
    fn seeded_bytes_are_reproducible_and_seed_dependent() {
        let mut first = [0u8; 100];
        let mut again = [0u8; 100];
        let mut other = [0u8; 100];
        SeededBytes::new(7).fill(&mut first);
        SeededBytes::new(7).fill(&mut again);
        SeededBytes::new(8).fill(&mut other);
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn layer_is_a_gzip_tar_that_gunzip_and_tar_accept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar.gz");
        let mut file = std::fs::File::create(&path).unwrap();
        let digests = write_layer(42, 100_000, &mut file).unwrap();
        drop(file);

        let tar = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            tar.status.success(),
            "gzip -t: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
        assert_eq!(
            digests.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&tar.stdout)))
        );

        let listing = std::process::Command::new("tar")
            .arg("-tvzf")
            .arg(&path)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains("100000") && listing.contains("layer-42.bin"),
            "tar -tv: {listing}"
        );
    }
}
