//! A reader for the files `torch.save` writes (`.pth`, `.pt`,
//! `pytorch_model.bin`) that never runs their pickle: PyTorch ≥ 1.6's zip
//! archive (a pickle, `data.pkl`, and one entry per tensor storage) and
//! the format before it (pickles one after another, then the storages).
//!
//! A pickle is a program. This one interprets only the opcodes a saved
//! state dict uses (containers, strings, numbers, memo) and calls only the
//! globals that rebuild tensors (`torch._utils._rebuild_tensor_v2`,
//! `_rebuild_parameter`, the storage classes, `collections.OrderedDict`);
//! `argparse.Namespace`, which training checkpoints hold their arguments in,
//! is kept as an opaque value and never built. Any other global is refused
//! with its name, before anything runs. Every size is checked against the
//! bytes present, containers are shared (as the pickle's memo shares them)
//! rather than copied, and walks are bounded, so a hostile file costs at
//! most its own size in memory and always ends in a [`TorchError`].
//!
//! Written here because burn-store's `PytorchStore` opens files by path,
//! which a page does not have, and loads into a module by name rather than
//! handing over the tensors for vitrine's own checks.

mod pickle;
mod zip;

use std::collections::BTreeMap;
use std::fmt;

use super::safetensors::{SafeTensors, TensorView};
use pickle::{Graph, Storage, Value, dict_keys, get, tensors_of, unpickle, unpickle_first};
use zip::zip_entries;

/// Why a PyTorch file could not be read; always says what, in the file's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchError(pub String);

impl fmt::Display for TorchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TorchError {}

fn err<T>(reason: impl Into<String>) -> Result<T, TorchError> {
    Err(TorchError(reason.into()))
}

/// Whether `bytes` look like a zip archive (what `torch.save` writes).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Whether `bytes` look like a pickle (protocol 2 to 5): PyTorch's format
/// before 1.6, or a pickle saved by other means.
pub fn is_pickle(bytes: &[u8]) -> bool {
    matches!(bytes, [0x80, 2..=5, ..])
}

/// Whether `bytes` are what `torch.save` writes rather than safetensors.
/// A safetensors file starts with its header's length, whose low byte may
/// be anything (0x80 too, as a pickle's first byte is), and then the
/// header's `{`: that tells them apart.
pub fn is_torch(bytes: &[u8]) -> bool {
    let safetensors = bytes.get(8) == Some(&b'{');
    is_zip(bytes) || bytes.starts_with(LEGACY_MAGIC) || (is_pickle(bytes) && !safetensors)
}

// ------------------------------------------------------- state dicts

/// The keys under which checkpoints nest their weights, in the order they
/// are tried: DINO's loader reads `teacher` by default.
pub const STATE_DICT_KEYS: &[&str] = &[
    "state_dict",
    "model",
    "model_state_dict",
    "teacher",
    "student",
    "module",
    "net",
    "ema",
];

/// A parsed PyTorch file: its weights as views of its bytes, and what
/// the reader chose or left out, for the user.
pub struct TorchFile<'a> {
    pub tensors: SafeTensors<'a>,
    pub notes: Vec<String>,
    /// The key of a training checkpoint the weights were read from (`None`
    /// for a bare state dict), and every key that holds one (DINO's
    /// `teacher` and `student`).
    pub key: Option<String>,
    pub keys: Vec<String>,
}

/// The pickle of a `torch.save` zip archive, and its storages by key.
fn zip_archive<'a>(
    bytes: &'a [u8],
    file: &str,
) -> Result<(Graph, BTreeMap<String, &'a [u8]>), TorchError> {
    let entries = zip_entries(bytes)?;
    let Some((pkl_name, pkl)) = entries.iter().find(|(n, _)| n.ends_with("data.pkl")) else {
        return err(format!(
            "`{file}` is a zip archive but not a torch.save one: it holds no `data.pkl`"
        ));
    };
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if let Some(order) = entries.get(&format!("{prefix}byteorder"))
        && *order != b"little"
    {
        return err(format!("`{file}` was saved big-endian: not supported"));
    }
    let graph = unpickle(pkl, file)?;
    let data = format!("{prefix}data/");
    let storages = entries
        .iter()
        .filter_map(|(n, b)| Some((n.strip_prefix(&data)?.to_string(), *b)))
        .collect();
    Ok((graph, storages))
}

/// How the format before PyTorch 1.6 begins: a pickle of its magic number,
/// 0x1950a86a20f9469cfc6c, at protocol 2.
const LEGACY_MAGIC: &[u8] = &[
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
];

/// The format before PyTorch 1.6 (`_use_new_zipfile_serialization=False`):
/// after the magic number, pickles of the format's version (1001), the
/// system's sizes, the object, and the list of storage keys; then each
/// storage as its element count (8 bytes) and its bytes.
fn legacy<'a>(
    bytes: &'a [u8],
    file: &str,
) -> Result<(Graph, BTreeMap<String, &'a [u8]>), TorchError> {
    let mut at = LEGACY_MAGIC.len();
    let mut next = |what: &str| -> Result<Graph, TorchError> {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.is_empty() {
            return err(format!("`{file}` is cut short: it ends before its {what}"));
        }
        let (graph, used) = unpickle_first(rest, file)?;
        at += used;
        Ok(graph)
    };
    let version = next("format version")?;
    if !matches!(version.root(), Value::Int(1001)) {
        return err(format!(
            "`{file}` is in PyTorch's format before 1.6, but of a version vitrine does not know"
        ));
    }
    let info = next("system information")?;
    if matches!(get(info.root(), "little_endian"), Some(Value::Bool(false))) {
        return err(format!("`{file}` was saved big-endian: not supported"));
    }
    let graph = next("contents")?;
    let keys = next("list of storages")?;
    let Value::List(keys) = keys.root() else {
        return err(format!(
            "`{file}` is damaged: its list of storages is not a list"
        ));
    };
    let mut storages = BTreeMap::new();
    for key in keys.borrow().iter() {
        let Value::Str(key) = key else {
            return err(format!(
                "`{file}` is damaged: a storage key is not a string"
            ));
        };
        let Some(storage) = graph.storages.get(key) else {
            return err(format!(
                "`{file}` is damaged: storage `{key}` is listed but no tensor uses it"
            ));
        };
        let size = match storage {
            Storage::Float(d) => d.size(),
            Storage::Other(_, size) => *size,
        };
        let count = bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let data = count
            .and_then(|n| usize::try_from(n).ok()?.checked_mul(size))
            .and_then(|n| bytes.get(at + 8..(at + 8).checked_add(n)?));
        let Some(data) = data else {
            return err(format!(
                "`{file}` is cut short or damaged: storage `{key}` claims {} values at byte \
                 {at} of a {}-byte file",
                count.map_or("its".into(), |n| n.to_string()),
                bytes.len()
            ));
        };
        at += 8 + data.len();
        storages.insert(key.clone(), data);
    }
    Ok((graph, storages))
}

/// Reads the state dict of `bytes` (what `torch.save` wrote, named
/// `file`): the top-level dict itself, or the one under `key` (by default
/// the first of [`STATE_DICT_KEYS`] the file has), with `module.` and
/// `backbone.` prefixes stripped (DDP, DINO; a DINO projection head beside
/// the backbone is left out).
pub fn parse<'a>(
    bytes: &'a [u8],
    file: &str,
    key: Option<&str>,
) -> Result<TorchFile<'a>, TorchError> {
    let (graph, storages) = if is_zip(bytes) {
        zip_archive(bytes, file)?
    } else if bytes.starts_with(LEGACY_MAGIC) {
        legacy(bytes, file)?
    } else if is_pickle(bytes) {
        return err(format!(
            "`{file}` is a bare pickle, not one torch.save wrote: vitrine reads only what \
             torch.save writes"
        ));
    } else {
        return err(format!(
            "`{file}` is neither safetensors nor a PyTorch file"
        ));
    };
    let root = graph.root();
    let mut notes = Vec::new();
    // The keys that hold a state dict, in the order they are tried.
    let mut keys: Vec<String> = STATE_DICT_KEYS
        .iter()
        .filter(|k| get(root, k).as_ref().and_then(tensors_of).is_some())
        .map(|k| k.to_string())
        .collect();
    let (chosen, key) = match key {
        Some(k) => {
            let chosen = get(root, k).ok_or_else(|| {
                TorchError(format!(
                    "`{file}` has no `{k}`; its keys: {}",
                    dict_keys(root).join(", ")
                ))
            })?;
            if !keys.iter().any(|o| o == k) {
                keys.insert(0, k.to_string());
            }
            (chosen, Some(k.to_string()))
        }
        None if tensors_of(root).is_some() => (root.clone(), None),
        None => {
            let Some(k) = keys.first() else {
                return err(format!(
                    "`{file}` holds no state dict: neither its top level nor any of {} is a \
                     dict of tensors (its keys: {})",
                    STATE_DICT_KEYS.join(", "),
                    dict_keys(root).join(", ")
                ));
            };
            notes.push(if keys.len() == 1 {
                format!("the weights are `{file}`'s `{k}`")
            } else {
                format!(
                    "the weights are `{file}`'s `{k}` (it also holds {})",
                    keys[1..]
                        .iter()
                        .map(|o| format!("`{o}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
            (get(root, k).expect("just found"), Some(k.clone()))
        }
    };
    let Some(mut named) = tensors_of(&chosen) else {
        return err(format!(
            "`{file}`'s `{}` is not a dict of tensors",
            key.as_deref().unwrap_or("")
        ));
    };
    // DDP's `module.` and DINO's `backbone.`, as DINO's own loader strips them.
    for strip in ["module.", "backbone."] {
        if named.iter().any(|(n, _)| n.starts_with(strip)) {
            let before = named.len();
            named = named
                .into_iter()
                .filter_map(|(n, t)| Some((n.strip_prefix(strip)?.to_string(), t)))
                .collect();
            let dropped = before - named.len();
            notes.push(if dropped > 0 {
                format!(
                    "the `{strip}` prefix is stripped; {dropped} tensors beside it (e.g. a \
                     projection head) are left out"
                )
            } else {
                format!("the `{strip}` prefix is stripped")
            });
        }
    }
    let mut tensors = BTreeMap::new();
    for (name, t) in named {
        let Storage::Float(dtype) = t.storage else {
            let Storage::Other(kind, _) = t.storage else {
                unreachable!()
            };
            return err(format!(
                "tensor `{name}` has dtype {kind}; only float32, float16, bfloat16 and float64 are supported"
            ));
        };
        let storage = storages.get(&t.key).ok_or_else(|| {
            TorchError(format!(
                "`{file}` is damaged: tensor `{name}` refers to storage `{}`, which the archive does not hold",
                t.key
            ))
        })?;
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                TorchError(format!("tensor `{name}`'s shape {:?} overflows", t.shape))
            })?;
        // Contiguous, row-major: what state dicts hold.
        let mut expect = 1usize;
        for (d, s) in t.shape.iter().zip(&t.stride).rev() {
            if *d > 1 && *s != expect {
                return err(format!(
                    "tensor `{name}` is not contiguous (shape {:?}, stride {:?}); save it with \
                     `.contiguous()`",
                    t.shape, t.stride
                ));
            }
            expect = expect.saturating_mul(*d);
        }
        let size = dtype.size();
        let span = t
            .offset
            .checked_add(numel)
            .and_then(|end| end.checked_mul(size))
            .filter(|&end| end <= storage.len());
        let Some(end) = span else {
            return err(format!(
                "`{file}` is damaged: tensor `{name}` needs {numel} values from offset {} of \
                 storage `{}`, which holds {} bytes",
                t.offset,
                t.key,
                storage.len()
            ));
        };
        let view = TensorView::new(dtype, t.shape.clone(), &storage[t.offset * size..end]);
        tensors.insert(name, view);
    }
    Ok(TorchFile {
        tensors: SafeTensors { tensors },
        notes,
        key,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::u32_at;

    #[test]
    fn safetensors_whose_header_length_looks_like_a_pickle_stay_safetensors() {
        // A header of 0x0280 bytes: its length's low bytes are PROTO 2.
        let mut st = vec![0x80, 0x02, 0, 0, 0, 0, 0, 0, b'{'];
        st.extend(std::iter::repeat_n(b' ', 0x27f));
        assert!(is_pickle(&st) && !is_torch(&st));
        assert!(is_torch(b"\x80\x02}q\x00."));
        assert!(is_torch(LEGACY_MAGIC));
        assert!(is_torch(b"PK\x03\x04"));
        assert!(!is_torch(b"\x80\x01"));
    }

    #[test]
    fn integers_of_every_width() {
        // PROTO 2, LONG1 of -2 in two bytes, STOP.
        let v = unpickle(&[0x80, 2, 0x8a, 2, 0xfe, 0xff, b'.'], "t").unwrap();
        assert!(matches!(v.root(), Value::Int(-2)));
        let v = unpickle(&[0x80, 2, b'J', 0xff, 0xff, 0xff, 0x7f, b'.'], "t").unwrap();
        assert!(matches!(v.root(), Value::Int(2147483647)));
    }

    #[test]
    fn hostile_pickles_end_in_an_error() {
        for (code, want) in [
            (
                &b"\x80\x02cposix\nsystem\n"[..],
                "asks to call `posix.system`: refused",
            ),
            (
                b"\x80\x02\x8c\x05posix\x8c\x06system\x93",
                "asks to call `posix.system`",
            ),
            (b"\x80\x02h\x07.", "memo entry 7 was never stored"),
            (b"\x80\x02X\xff\xff\xff\x7fab", "ends inside an instruction"),
            (b"\x80\x02(((((", "ends inside an instruction"),
            (b"\x80\x02s.", "stack empty"),
            (b"\x80\x02]N}s.", "not a dict"),
            (b"\x80\x02\xff", "opcode 0xff"),
        ] {
            let e = unpickle(code, "x.pth").err().expect("refused").0;
            assert!(e.contains(want), "{e}");
        }
    }

    /// A stored zip of one entry, as torch.save writes it.
    fn one_entry_zip(name: &[u8], data: &[u8]) -> Vec<u8> {
        let mut z = b"PK\x03\x04".to_vec();
        z.extend([0; 22]);
        z.extend((name.len() as u16).to_le_bytes());
        z.extend([0, 0]);
        z.extend(name);
        z.extend(data);
        let cd = z.len();
        z.extend(b"PK\x01\x02");
        z.extend([0; 16]);
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((data.len() as u32).to_le_bytes());
        z.extend((name.len() as u16).to_le_bytes());
        z.extend([0; 12]);
        z.extend(0u32.to_le_bytes());
        z.extend(name);
        let cd_size = z.len() - cd;
        z.extend(b"PK\x05\x06");
        z.extend([0; 4]);
        z.extend([1, 0, 1, 0]);
        z.extend((cd_size as u32).to_le_bytes());
        z.extend((cd as u32).to_le_bytes());
        z.extend([0, 0]);
        z
    }

    #[test]
    fn zip_directories_that_lie_end_in_an_error() {
        let good = one_entry_zip(b"m/data.pkl", b"\x80\x02}.");
        assert_eq!(zip_entries(&good).unwrap().len(), 1);
        let eocd = good.len() - 22;
        let cd = u32_at(&good, eocd + 16).unwrap();
        // More entries than the directory holds, and a comment length that
        // carries the walk past the end of the file.
        let mut more = good.clone();
        more[eocd + 10] = 9;
        let e = zip_entries(&more).unwrap_err().0;
        assert!(e.contains("not where the directory says"), "{e}");
        more[cd + 32..cd + 34].copy_from_slice(&[0xff, 0xff]);
        let e = zip_entries(&more).unwrap_err().0;
        assert!(e.contains("not where the directory says"), "{e}");
        // An entry whose local header lies past the end of the file.
        let mut far = good.clone();
        far[cd + 42..cd + 46].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = zip_entries(&far).unwrap_err().0;
        assert!(e.contains("past the end of the file"), "{e}");
        // Sizes beyond the file.
        let mut big = good.clone();
        big[cd + 20..cd + 28].copy_from_slice(&[0xff; 8]);
        let e = zip_entries(&big).unwrap_err().0;
        assert!(e.contains("past the end"), "{e}");
    }

    #[test]
    fn a_list_shared_through_the_memo_is_not_copied() {
        // A list put in the memo, then 200 references to it appended to itself:
        // sharing, not copying, so no blow-up; the walk of the result is bounded.
        let mut code = vec![0x80, 2, b']', b'q', 0, b'('];
        code.extend(std::iter::repeat_n([b'h', 0], 200).flatten());
        code.extend([b'e', b'.']);
        let v = unpickle(&code, "t").unwrap();
        let Value::List(l) = v.root() else { panic!() };
        assert_eq!(l.borrow().len(), 200);
        assert!(tensors_of(v.root()).is_none());
    }

    #[test]
    fn deep_nesting_is_taken_apart_without_recursion() {
        // A million lists, each inside the one before: dropped recursively,
        // this would overflow the stack.
        let n = 1_000_000;
        let mut code = vec![0x80, 2];
        code.extend(std::iter::repeat_n(b']', n));
        code.extend(std::iter::repeat_n(b'a', n - 1));
        code.push(b'.');
        let v = unpickle(&code, "t").unwrap();
        assert!(matches!(v.root(), Value::List(_)));
        // And the same left on the stack by an error.
        code.pop();
        assert!(unpickle(&code, "t").is_err());
    }
}
