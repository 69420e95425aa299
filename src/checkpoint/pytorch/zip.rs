//! The zip archives `torch.save` writes (PyTorch ≥ 1.6): stored
//! entries only, every offset and size checked against the file.

use std::collections::BTreeMap;

use super::{TorchError, err};

pub(super) fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// The entries of a zip archive by name, each its stored bytes. Only stored
/// (uncompressed) entries, as `torch.save` writes them; every offset and
/// size is checked against the file.
pub(super) fn zip_entries(b: &[u8]) -> Result<BTreeMap<String, &[u8]>, TorchError> {
    const EOCD: &[u8] = b"PK\x05\x06";
    let search_from = b.len().saturating_sub(22 + 65_535);
    let Some(eocd) = (search_from..=b.len().saturating_sub(22))
        .rev()
        .find(|&i| b[i..].starts_with(EOCD))
    else {
        return err(
            "truncated or damaged zip archive: its end-of-directory record is missing \
             (was the download cut short?)",
        );
    };
    let count = u16_at(b, eocd + 10).expect("the record is 22 bytes");
    let cd_size = u32_at(b, eocd + 12).expect("the record is 22 bytes");
    let cd_offset = u32_at(b, eocd + 16).expect("the record is 22 bytes");
    if count == 0xFFFF || cd_offset == 0xFFFF_FFFF {
        return err("zip64 archives (files over 4 GB) are not supported");
    }
    if cd_offset.checked_add(cd_size).is_none_or(|end| end > eocd) {
        return err(format!(
            "damaged zip archive: its directory claims bytes {cd_offset}..{} of a {}-byte file",
            cd_offset.saturating_add(cd_size),
            b.len()
        ));
    }
    let mut entries = BTreeMap::new();
    let mut at = cd_offset;
    for _ in 0..count {
        let bad = |what: &str| err(format!("damaged zip archive: {what}"));
        if !b
            .get(at..)
            .is_some_and(|rest| rest.starts_with(b"PK\x01\x02"))
        {
            return bad("a directory entry is not where the directory says");
        }
        let field = |off| u32_at(b, at + off);
        let short = |off| u16_at(b, at + off);
        let (Some(method), Some(size), Some(stored), Some(name_len), Some(extra), Some(comment)) = (
            short(10),
            field(20),
            field(24),
            short(28),
            short(30),
            short(32),
        ) else {
            return bad("a directory entry is cut short");
        };
        let Some(local) = field(42) else {
            return bad("a directory entry is cut short");
        };
        let Some(name) = b.get(at + 46..at + 46 + name_len) else {
            return bad("a directory entry's name is cut short");
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if method != 0 {
            return err(format!(
                "zip entry `{name}` is compressed (method {method}); torch.save stores \
                 entries uncompressed, and vitrine reads only those"
            ));
        }
        if size != stored {
            return err(format!(
                "damaged zip archive: entry `{name}` says it is {size} bytes stored and \
                 {stored} bytes unpacked, but it is not compressed"
            ));
        }
        // The local header's own name and extra field lengths place the data.
        let (Some(local_name), Some(local_extra)) = (u16_at(b, local + 26), u16_at(b, local + 28))
        else {
            return bad(&format!("entry `{name}` starts past the end of the file"));
        };
        if !b
            .get(local..)
            .is_some_and(|rest| rest.starts_with(b"PK\x03\x04"))
        {
            return bad(&format!("entry `{name}` is not where the directory says"));
        }
        let start = local + 30 + local_name + local_extra;
        let Some(data) = start.checked_add(size).and_then(|end| b.get(start..end)) else {
            return err(format!(
                "truncated or damaged zip archive: entry `{name}` claims {size} bytes from \
                 offset {start}, past the end of the {}-byte file",
                b.len()
            ));
        };
        entries.insert(name, data);
        at += 46 + name_len + extra + comment;
    }
    Ok(entries)
}
