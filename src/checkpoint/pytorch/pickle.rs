//! The restricted pickle machine: the opcodes a saved state dict uses,
//! and only the globals that rebuild tensors; see the module above.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::rc::Rc;

use super::TorchError;
use crate::checkpoint::safetensors::Dtype;

/// A storage class: the element type of its tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Storage {
    Float(Dtype),
    /// Integer and boolean storages (optimiser steps, counters): their
    /// tensors may sit beside the weights, and are never widened.
    Other(&'static str, usize),
}

/// The globals a state dict may name; every other one is refused.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Storage),
    /// `argparse.Namespace`: kept, never built.
    Namespace,
}

pub(super) fn global(module: &str, name: &str) -> Option<Global> {
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
pub(super) struct TensorRef {
    pub(super) storage: Storage,
    pub(super) key: String,
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

pub(super) type Shared<T> = Rc<RefCell<T>>;

#[derive(Clone, Debug)]
pub(super) enum Value {
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
    pub(super) fn kind(&self) -> &'static str {
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
pub(super) fn dismantle(mut work: Vec<Value>) {
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
pub(super) struct Machine<'c> {
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
pub(super) fn unpickle(code: &[u8], file: &str) -> Result<Graph, TorchError> {
    Ok(unpickle_first(code, file)?.0)
}

/// [`unpickle`] for the first of several pickles in `code`, with the
/// number of bytes it took.
pub(super) fn unpickle_first(code: &[u8], file: &str) -> Result<(Graph, usize), TorchError> {
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
pub(super) fn refuse_unknown(module: &str, name: &str, file: &str) -> Result<Global, TorchError> {
    global(module, name).ok_or_else(|| {
        TorchError(format!(
            "`{file}` asks to call `{module}.{name}`: refused, vitrine only reads tensors"
        ))
    })
}

pub(super) fn usizes(v: &Value, what: &str) -> Result<Vec<usize>, String> {
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
pub(super) fn call(callable: &Value, args: &Value) -> Result<Value, String> {
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

/// The tensors of a dict, as (name, tensor); `None` when it is not a
/// state dict (something other than tensors among its values, at the top).
pub(super) fn tensors_of(v: &Value) -> Option<Vec<(String, Rc<TensorRef>)>> {
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
pub(super) fn dict_keys(v: &Value) -> Vec<String> {
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

pub(super) fn get(v: &Value, key: &str) -> Option<Value> {
    let Value::Dict(d) = v else { return None };
    d.borrow()
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
        .map(|(_, v)| v.clone())
}

/// A pickle's value (first) and what else its machine held, taken apart
/// by [`dismantle`] when it goes.
pub(super) struct Graph {
    values: Vec<Value>,
    /// The storages its persistent ids named, with their classes.
    pub(super) storages: BTreeMap<String, Storage>,
}

impl Graph {
    pub(super) fn root(&self) -> &Value {
        &self.values[0]
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        dismantle(std::mem::take(&mut self.values));
    }
}
