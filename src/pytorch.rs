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

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::rc::Rc;

use crate::safetensors::{Dtype, SafeTensors, TensorView};

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

// ---------------------------------------------------------------- zip

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// The entries of a zip archive by name, each its stored bytes. Only stored
/// (uncompressed) entries, as `torch.save` writes them; every offset and
/// size is checked against the file.
fn zip_entries(b: &[u8]) -> Result<BTreeMap<String, &[u8]>, TorchError> {
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

// ------------------------------------------------------------- pickle

/// A storage class: the element type of its tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Storage {
    Float(Dtype),
    /// Integer and boolean storages (optimiser steps, counters): their
    /// tensors may sit beside the weights, and are never widened.
    Other(&'static str, usize),
}

/// The globals a state dict may name; every other one is refused.
#[derive(Clone, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Storage),
    /// `argparse.Namespace`: kept, never built.
    Namespace,
}

fn global(module: &str, name: &str) -> Option<Global> {
    let storage = |s| Some(Global::Storage(s));
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("argparse", "Namespace") => Some(Global::Namespace),
        ("torch", "FloatStorage") => storage(Storage::Float(Dtype::F32)),
        ("torch", "HalfStorage") => storage(Storage::Float(Dtype::F16)),
        ("torch", "BFloat16Storage") => storage(Storage::Float(Dtype::BF16)),
        ("torch", "DoubleStorage") => storage(Storage::Float(Dtype::F64)),
        ("torch", "LongStorage") => storage(Storage::Other("int64", 8)),
        ("torch", "IntStorage") => storage(Storage::Other("int32", 4)),
        ("torch", "ShortStorage") => storage(Storage::Other("int16", 2)),
        ("torch", "CharStorage") => storage(Storage::Other("int8", 1)),
        ("torch", "ByteStorage") => storage(Storage::Other("uint8", 1)),
        ("torch", "BoolStorage") => storage(Storage::Other("bool", 1)),
        _ => None,
    }
}

/// One tensor as the pickle describes it: a view of a storage.
#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    storage: Storage,
    key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

type Shared<T> = Rc<RefCell<T>>;

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(String),
    Tuple(Rc<Vec<Value>>),
    List(Shared<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    Global(Global),
    /// A persistent id resolved to a storage: (class, key).
    StorageRef(Storage, String),
    Tensor(Rc<TensorRef>),
    /// An allowed object vitrine does not look into (`argparse.Namespace`).
    Opaque(&'static str),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float => "a float",
            Value::Str(_) => "a string",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a class",
            Value::StorageRef(..) => "a storage",
            Value::Tensor(_) => "a tensor",
            Value::Opaque(what) => what,
        }
    }
}

/// Takes apart values without recursion: nested containers (a hostile
/// pickle can nest a million deep, or make cycles) would otherwise be
/// dropped recursively and overflow the stack.
fn dismantle(mut work: Vec<Value>) {
    while let Some(v) = work.pop() {
        match v {
            Value::List(l) => work.append(&mut std::mem::take(&mut *l.borrow_mut())),
            Value::Dict(d) => {
                for (k, v) in std::mem::take(&mut *d.borrow_mut()) {
                    work.push(k);
                    work.push(v);
                }
            }
            Value::Tuple(t) => {
                if let Ok(items) = Rc::try_unwrap(t) {
                    work.extend(items);
                }
            }
            _ => {}
        }
    }
}

/// The pickle machine's state; whatever it holds when it stops is taken
/// apart by [`dismantle`].
struct Machine<'c> {
    code: &'c [u8],
    at: usize,
    file: &'c str,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<usize, Value>,
    /// Every storage a persistent id named, with its class.
    storages: BTreeMap<String, Storage>,
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        let mut all = std::mem::take(&mut self.stack);
        all.extend(std::mem::take(&mut self.memo).into_values());
        dismantle(all);
    }
}

impl<'c> Machine<'c> {
    fn bad(&self, at: usize, what: impl fmt::Display) -> TorchError {
        TorchError(format!(
            "`{}` is not a PyTorch pickle vitrine can read: {what} (at byte {at})",
            self.file
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'c [u8], TorchError> {
        let code = self.code;
        let s = code
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| {
                self.bad(
                    self.at,
                    format!("it ends inside an instruction that needs {n} bytes"),
                )
            })?;
        self.at += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, TorchError> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian unsigned length of `width` bytes.
    fn length(&mut self, width: usize) -> Result<usize, TorchError> {
        let b = self.take(width)?;
        let mut n = 0u64;
        for (i, &byte) in b.iter().enumerate() {
            n |= (byte as u64) << (8 * i);
        }
        // More than the pickle holds is caught by `take`.
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn line(&mut self) -> Result<String, TorchError> {
        let rest = &self.code[self.at.min(self.code.len())..];
        let Some(end) = rest.iter().take(256).position(|&c| c == b'\n') else {
            return Err(self.bad(self.at, "a global's name is not ended"));
        };
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn pop(&mut self, op_at: usize, op: u8) -> Result<Value, TorchError> {
        self.stack
            .pop()
            .ok_or_else(|| self.bad(op_at, format!("opcode 0x{op:02x} finds the stack empty")))
    }

    fn pop_mark(&mut self, op_at: usize, op: u8) -> Result<Vec<Value>, TorchError> {
        let Some(m) = self.marks.pop() else {
            return Err(self.bad(op_at, format!("opcode 0x{op:02x} finds no mark")));
        };
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }

    /// Runs to STOP and returns the value it leaves.
    fn run(&mut self) -> Result<Value, TorchError> {
        loop {
            let op_at = self.at;
            let op = self.byte()?;
            match op {
                0x80 => {
                    self.take(1)?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(op_at, op), // STOP
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b']' => self.stack.push(Value::List(Rc::default())),
                b')' => self.stack.push(Value::Tuple(Rc::default())),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Bool(op == 0x88)),
                b'K' => {
                    let v = self.byte()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = self.length(2)?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'J' => {
                    let b = self.take(4)?;
                    let v = i32::from_le_bytes(b.try_into().expect("4 bytes"));
                    self.stack.push(Value::Int(v as i64))
                }
                0x8a => {
                    // LONG1: a little-endian two's-complement integer of n bytes.
                    let n = self.byte()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(self.bad(op_at, format!("an integer of {n} bytes")));
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v))
                }
                b'G' => {
                    // BINFLOAT: a number no state dict's tensors need.
                    self.take(8)?;
                    self.stack.push(Value::Float)
                }
                b'X' | 0x8c | 0x8d | b'B' | b'C' | 0x8e => {
                    // BINUNICODE (a 4-byte length), SHORT_BINUNICODE (1),
                    // BINUNICODE8 (8); BINBYTES, SHORT_BINBYTES, BINBYTES8.
                    let width = match op {
                        0x8c | b'C' => 1,
                        0x8d | 0x8e => 8,
                        _ => 4,
                    };
                    let n = self.length(width)?;
                    let text = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(text))
                }
                b't' => {
                    let items = self.pop_mark(op_at, op)?;
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(
                            self.bad(op_at, format!("TUPLE{n} finds fewer than {n} values"))
                        );
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => self.length(1)?,
                        b'r' => self.length(4)?,
                        _ => self.memo.len(),
                    };
                    let Some(top) = self.stack.last().cloned() else {
                        return Err(self.bad(op_at, "a memo put finds the stack empty"));
                    };
                    if let Some(old) = self.memo.insert(key, top) {
                        dismantle(vec![old]);
                    }
                }
                b'h' | b'j' => {
                    let key = self.length(if op == b'h' { 1 } else { 4 })?;
                    let Some(v) = self.memo.get(&key).cloned() else {
                        return Err(self.bad(op_at, format!("memo entry {key} was never stored")));
                    };
                    self.stack.push(v)
                }
                b's' | b'u' => {
                    let pairs = if op == b's' {
                        let v = self.pop(op_at, op)?;
                        let k = self.pop(op_at, op)?;
                        vec![k, v]
                    } else {
                        self.pop_mark(op_at, op)?
                    };
                    let Some(Value::Dict(d)) = self.stack.last() else {
                        dismantle(pairs);
                        return Err(self.bad(op_at, "SETITEM on something that is not a dict"));
                    };
                    if pairs.len() % 2 != 0 {
                        dismantle(pairs);
                        return Err(self.bad(op_at, "SETITEMS with an odd number of values"));
                    }
                    let mut d = d.borrow_mut();
                    let mut it = pairs.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop(op_at, op)?]
                    } else {
                        self.pop_mark(op_at, op)?
                    };
                    let Some(Value::List(l)) = self.stack.last() else {
                        dismantle(items);
                        return Err(self.bad(op_at, "APPEND on something that is not a list"));
                    };
                    l.borrow_mut().extend(items);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = refuse_unknown(&module, &name, self.file)?;
                    self.stack.push(Value::Global(g))
                }
                0x93 => {
                    // STACK_GLOBAL: the module and the name from the stack.
                    let name = self.pop(op_at, op)?;
                    let module = self.pop(op_at, op)?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.bad(op_at, "STACK_GLOBAL without two names"));
                    };
                    let g = refuse_unknown(&module, &name, self.file)?;
                    self.stack.push(Value::Global(g))
                }
                b'Q' => {
                    // BINPERSID: ('storage', class, key, location, numel).
                    let pid = self.pop(op_at, op)?;
                    let storage = match &pid {
                        Value::Tuple(t) => match t.as_slice() {
                            [
                                Value::Str(kind),
                                Value::Global(Global::Storage(s)),
                                Value::Str(key),
                                ..,
                            ] if kind == "storage" => {
                                self.storages.insert(key.clone(), *s);
                                Some(Value::StorageRef(*s, key.clone()))
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    dismantle(vec![pid]);
                    let Some(storage) = storage else {
                        return Err(self.bad(op_at, "a persistent id that is not a storage"));
                    };
                    self.stack.push(storage)
                }
                b'R' => {
                    let args = self.pop(op_at, op)?;
                    let callable = self.pop(op_at, op)?;
                    let v = call(&callable, &args);
                    dismantle(vec![args, callable]);
                    let v = v.map_err(|e| self.bad(op_at, e))?;
                    self.stack.push(v)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args), for the opaque
                    // Namespace and OrderedDict only.
                    let args = self.pop(op_at, op)?;
                    let cls = self.pop(op_at, op)?;
                    dismantle(vec![args]);
                    let v = match cls {
                        Value::Global(Global::Namespace) => Value::Opaque("argparse.Namespace"),
                        Value::Global(Global::OrderedDict) => Value::Dict(Rc::default()),
                        other => {
                            let kind = other.kind();
                            dismantle(vec![other]);
                            return Err(self.bad(op_at, format!("NEWOBJ of {kind}")));
                        }
                    };
                    self.stack.push(v)
                }
                b'b' => {
                    // BUILD: an object's state (an OrderedDict's `_metadata`,
                    // a Namespace's fields) is not needed: dropped.
                    let state = self.pop(op_at, op)?;
                    dismantle(vec![state]);
                    if self.stack.is_empty() {
                        return Err(self.bad(op_at, "BUILD finds no object"));
                    }
                }
                _ => {
                    return Err(self.bad(
                        op_at,
                        format!("opcode 0x{op:02x} is not one a saved state dict uses"),
                    ));
                }
            }
        }
    }
}

/// Runs the pickle `code` (of `file`) as far as a state dict needs, and
/// returns its value, with everything else the machine held (the memo
/// shares its containers), to be taken apart together.
fn unpickle(code: &[u8], file: &str) -> Result<Graph, TorchError> {
    Ok(unpickle_first(code, file)?.0)
}

/// [`unpickle`] for the first of several pickles in `code`, with the
/// number of bytes it took.
fn unpickle_first(code: &[u8], file: &str) -> Result<(Graph, usize), TorchError> {
    let mut machine = Machine {
        code,
        at: 0,
        file,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: BTreeMap::new(),
    };
    let root = machine.run()?;
    let mut values = vec![root];
    values.append(&mut machine.stack);
    values.extend(std::mem::take(&mut machine.memo).into_values());
    let graph = Graph {
        values,
        storages: std::mem::take(&mut machine.storages),
    };
    Ok((graph, machine.at))
}

/// The allowed global `module.name`, or the refusal naming it.
fn refuse_unknown(module: &str, name: &str, file: &str) -> Result<Global, TorchError> {
    global(module, name).ok_or_else(|| {
        TorchError(format!(
            "`{file}` asks to call `{module}.{name}`: refused, vitrine only reads tensors"
        ))
    })
}

fn usizes(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    let Value::Tuple(t) = v else {
        return Err(format!("a tensor's {what} is {}, not a tuple", v.kind()));
    };
    t.iter()
        .map(|x| match x {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            other => Err(format!("a tensor's {what} holds {}", other.kind())),
        })
        .collect()
}

/// REDUCE: the allowed callables, called on their arguments.
fn call(callable: &Value, args: &Value) -> Result<Value, String> {
    let Value::Tuple(args) = args else {
        return Err("REDUCE with arguments that are not a tuple".into());
    };
    match callable {
        Value::Global(Global::OrderedDict) => Ok(Value::Dict(Rc::default())),
        Value::Global(Global::Namespace) => Ok(Value::Opaque("argparse.Namespace")),
        Value::Global(Global::RebuildTensor) => match args.as_slice() {
            [
                Value::StorageRef(storage, key),
                Value::Int(offset),
                size,
                stride,
                ..,
            ] if *offset >= 0 => Ok(Value::Tensor(Rc::new(TensorRef {
                storage: *storage,
                key: key.clone(),
                offset: *offset as usize,
                shape: usizes(size, "size")?,
                stride: usizes(stride, "stride")?,
            }))),
            _ => Err("_rebuild_tensor_v2 with arguments it does not take".into()),
        },
        Value::Global(Global::RebuildParameter) => match args.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Err("_rebuild_parameter without a tensor".into()),
        },
        other => Err(format!(
            "REDUCE calls {}, which is not a function",
            other.kind()
        )),
    }
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

/// The tensors of a dict, as (name, tensor); `None` when it is not a
/// state dict (something other than tensors among its values, at the top).
fn tensors_of(v: &Value) -> Option<Vec<(String, Rc<TensorRef>)>> {
    let Value::Dict(d) = v else { return None };
    let d = d.borrow();
    let mut out = Vec::new();
    for (k, v) in d.iter() {
        match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => out.push((k.clone(), t.clone())),
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The keys of a dict that are strings, for messages.
fn dict_keys(v: &Value) -> Vec<String> {
    match v {
        Value::Dict(d) => d
            .borrow()
            .iter()
            .filter_map(|(k, _)| match k {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .take(12)
            .collect(),
        _ => Vec::new(),
    }
}

fn get(v: &Value, key: &str) -> Option<Value> {
    let Value::Dict(d) = v else { return None };
    d.borrow()
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
        .map(|(_, v)| v.clone())
}

/// A pickle's value (first) and what else its machine held, taken apart
/// by [`dismantle`] when it goes.
struct Graph {
    values: Vec<Value>,
    /// The storages its persistent ids named, with their classes.
    storages: BTreeMap<String, Storage>,
}

impl Graph {
    fn root(&self) -> &Value {
        &self.values[0]
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        dismantle(std::mem::take(&mut self.values));
    }
}

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
