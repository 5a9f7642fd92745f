//! Makes every mutable global of a module reachable from the host, so a snapshot can hold
//! the whole guest state. Globals a module does not export (a C program's
//! `__stack_pointer`, for one) are exported as `__ate_global_<index>`; everything else in
//! the module is copied byte for byte.

use wasmparser::{BinaryReader, ExternalKind, GlobalSectionReader, ImportSectionReader, TypeRef};

use crate::WasmError;

/// Prefix of the exports added for unexported mutable globals.
pub const GLOBAL_EXPORT_PREFIX: &str = "__ate_global_";

const EXPORT_SECTION: u8 = 7;
const GLOBAL_SECTION: u8 = 6;

/// The module with its mutable globals exported, and their export names in index order.
#[derive(Debug)]
pub struct Instrumented {
    pub bytes: Vec<u8>,
    pub mutable_globals: Vec<String>,
}

struct Section<'a> {
    id: u8,
    /// The whole section, header included.
    raw: &'a [u8],
    payload: &'a [u8],
    offset: usize,
}

fn invalid(reason: impl Into<String>) -> WasmError {
    WasmError::InvalidModule(reason.into())
}

fn read_leb(bytes: &[u8], pos: &mut usize) -> Result<u32, WasmError> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes
            .get(*pos)
            .ok_or_else(|| invalid("truncated section header"))?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| invalid("section size overflows"));
        }
    }
    Err(invalid("malformed LEB128 number"))
}

fn write_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn sections(module: &[u8]) -> Result<Vec<Section<'_>>, WasmError> {
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err(invalid("not a WebAssembly binary"));
    }
    if module[4..8] != [1, 0, 0, 0] {
        return Err(invalid(
            "not a core WebAssembly module (components are not supported)",
        ));
    }
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < module.len() {
        let start = pos;
        let id = module[pos];
        pos += 1;
        let size = read_leb(module, &mut pos)? as usize;
        let end = pos
            .checked_add(size)
            .filter(|e| *e <= module.len())
            .ok_or_else(|| invalid("section runs past the end of the module"))?;
        out.push(Section {
            id,
            raw: &module[start..end],
            payload: &module[pos..end],
            offset: pos,
        });
        pos = end;
    }
    Ok(out)
}

fn parse<E: std::fmt::Display>(e: E) -> WasmError {
    invalid(e.to_string())
}

/// Rewrites `module` so every mutable global is exported.
pub fn export_mutable_globals(module: &[u8]) -> Result<Instrumented, WasmError> {
    let secs = sections(module)?;
    let mut imported_globals = 0u32;
    let mut mutable: Vec<u32> = Vec::new();
    let mut exported: std::collections::BTreeMap<u32, String> = Default::default();
    for s in &secs {
        let reader = || BinaryReader::new(s.payload, s.offset);
        match s.id {
            2 => {
                for import in ImportSectionReader::new(reader())
                    .map_err(parse)?
                    .into_imports()
                {
                    if let TypeRef::Global(g) = import.map_err(parse)?.ty {
                        if g.mutable {
                            return Err(invalid("imported mutable globals cannot be snapshotted"));
                        }
                        imported_globals += 1;
                    }
                }
            }
            GLOBAL_SECTION => {
                for (i, g) in GlobalSectionReader::new(reader())
                    .map_err(parse)?
                    .into_iter()
                    .enumerate()
                {
                    if g.map_err(parse)?.ty.mutable {
                        mutable.push(imported_globals + i as u32);
                    }
                }
            }
            EXPORT_SECTION => {
                for e in wasmparser::ExportSectionReader::new(reader()).map_err(parse)? {
                    let e = e.map_err(parse)?;
                    if e.kind == ExternalKind::Global {
                        exported
                            .entry(e.index)
                            .or_insert_with(|| e.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let mut names = Vec::with_capacity(mutable.len());
    let mut added = Vec::new();
    for idx in &mutable {
        match exported.get(idx) {
            Some(name) => names.push(name.clone()),
            None => {
                let name = format!("{GLOBAL_EXPORT_PREFIX}{idx}");
                added.push((name.clone(), *idx));
                names.push(name);
            }
        }
    }
    if added.is_empty() {
        return Ok(Instrumented {
            bytes: module.to_vec(),
            mutable_globals: names,
        });
    }
    let mut out = Vec::with_capacity(module.len() + added.len() * 24);
    out.extend_from_slice(&module[..8]);
    let has_exports = secs.iter().any(|s| s.id == EXPORT_SECTION);
    for s in &secs {
        if s.id == EXPORT_SECTION {
            out.extend(export_section(Some(s.payload), &added)?);
            continue;
        }
        out.extend_from_slice(s.raw);
        if s.id == GLOBAL_SECTION && !has_exports {
            out.extend(export_section(None, &added)?);
        }
    }
    Ok(Instrumented {
        bytes: out,
        mutable_globals: names,
    })
}

/// An export section: the existing entries copied, then the added global exports.
fn export_section(existing: Option<&[u8]>, added: &[(String, u32)]) -> Result<Vec<u8>, WasmError> {
    let (count, entries) = match existing {
        Some(payload) => {
            let mut pos = 0;
            let count = read_leb(payload, &mut pos)?;
            (count, &payload[pos..])
        }
        None => (0, &[][..]),
    };
    let total = count
        .checked_add(added.len() as u32)
        .ok_or_else(|| invalid("too many exports"))?;
    let mut payload = Vec::with_capacity(entries.len() + added.len() * 24 + 5);
    write_leb(&mut payload, total);
    payload.extend_from_slice(entries);
    for (name, idx) in added {
        write_leb(&mut payload, name.len() as u32);
        payload.extend_from_slice(name.as_bytes());
        payload.push(0x03);
        write_leb(&mut payload, *idx);
    }
    let mut section = vec![EXPORT_SECTION];
    write_leb(&mut section, payload.len() as u32);
    section.extend(payload);
    Ok(section)
}
