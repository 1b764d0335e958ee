// SPDX-License-Identifier: GPL-2.0

//! A small safe wrapper over libbpf's BTF reader and writer (`libbpf-sys`).
//!
//! Only what btfgen needs: parse vmlinux BTF, load a module's split BTF on top of it, look types
//! up, add `FUNC_PROTO`/`FUNC`/`PTR` types and serialise the split part back to raw `.BTF` bytes.

use std::ffi::{c_int, CStr, CString};
use std::io;
use std::marker::PhantomData;
use std::path::Path;
use std::ptr::NonNull;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_sys as sys;

/// `BTF_KIND_ENUM`, for comparing with [`TypeInfo::kind`].
pub const ENUM: u32 = sys::BTF_KIND_ENUM;
/// `BTF_KIND_PTR`, for comparing with [`TypeInfo::kind`].
pub const PTR: u32 = sys::BTF_KIND_PTR;
/// `BTF_KIND_CONST`, for comparing with [`TypeInfo::kind`].
pub const CONST: u32 = sys::BTF_KIND_CONST;
/// `BTF_KIND_STRUCT`, for comparing with [`TypeInfo::kind`].
pub const STRUCT: u32 = sys::BTF_KIND_STRUCT;
/// `BTF_KIND_UNION`, for comparing with [`TypeInfo::kind`].
pub const UNION: u32 = sys::BTF_KIND_UNION;

/// BTF kinds btfgen looks up or writes (`BTF_KIND_*` of `include/uapi/linux/btf.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `BTF_KIND_INT`.
    Int,
    /// `BTF_KIND_PTR`.
    Ptr,
    /// `BTF_KIND_STRUCT`.
    Struct,
    /// `BTF_KIND_UNION`.
    Union,
    /// `BTF_KIND_FUNC`.
    Func,
    /// `BTF_KIND_FUNC_PROTO`.
    FuncProto,
    /// `BTF_KIND_ENUM`.
    Enum,
    /// `BTF_KIND_CONST`.
    Const,
}

impl Kind {
    fn raw(self) -> u32 {
        match self {
            Kind::Int => sys::BTF_KIND_INT,
            Kind::Ptr => sys::BTF_KIND_PTR,
            Kind::Struct => sys::BTF_KIND_STRUCT,
            Kind::Union => sys::BTF_KIND_UNION,
            Kind::Func => sys::BTF_KIND_FUNC,
            Kind::FuncProto => sys::BTF_KIND_FUNC_PROTO,
            Kind::Enum => sys::BTF_KIND_ENUM,
            Kind::Const => sys::BTF_KIND_CONST,
        }
    }
}

/// A decoded view of one BTF type, enough for checks and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    /// `BTF_KIND_*` value.
    pub kind: u32,
    /// The type's name ("" for anonymous types).
    pub name: String,
    /// `size` for INT/STRUCT/UNION, `type` for PTR/FUNC/FUNC_PROTO (return type).
    pub size_or_type: u32,
    /// `vlen` from `info` (number of parameters for FUNC_PROTO, linkage for FUNC).
    pub vlen: u16,
    /// FUNC_PROTO parameters as (name, type id).
    pub params: Vec<(String, u32)>,
    /// For INT: the encoding bits (`BTF_INT_SIGNED`, ...) and size in bits.
    pub int_encoding: Option<(u8, u8)>,
    /// STRUCT/UNION members as (name, type id, offset in bits); bitfields are left out.
    pub members: Vec<(String, u32, u32)>,
}

/// An owned `struct btf` from libbpf.
///
/// # Invariants
///
/// `ptr` is a valid `struct btf` owned by this value; when `'base` is borrowed from a base
/// [`Btf`], that base outlives `ptr` (libbpf keeps a pointer to it).
pub struct Btf<'base> {
    ptr: NonNull<sys::btf>,
    _base: PhantomData<&'base Btf<'static>>,
}

fn last_error(what: &str) -> anyhow::Error {
    anyhow!("{what}: {}", io::Error::last_os_error())
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("name {s:?} contains a NUL byte"))
}

impl Btf<'static> {
    /// Parses the `.BTF` section of an ELF file (vmlinux) or a raw BTF file.
    pub fn parse(path: &Path) -> Result<Self> {
        let cpath = cstring(&path.to_string_lossy())?;
        // SAFETY: `cpath` is a valid NUL-terminated string; a NULL `btf_ext` out-pointer is
        // allowed.
        let ptr = unsafe { sys::btf__parse(cpath.as_ptr(), std::ptr::null_mut()) };
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| last_error(&format!("cannot read BTF from {}", path.display())))?;
        // INVARIANT: libbpf returned a new `struct btf` that we now own; it has no base.
        Ok(Self {
            ptr,
            _base: PhantomData,
        })
    }
}

impl Btf<'static> {
    /// Parses raw BTF that is a base of its own, such as a module's distilled `.BTF.base`.
    pub fn from_raw(data: &[u8]) -> Result<Self> {
        let size = u32::try_from(data.len()).context("BTF is larger than 4 GiB")?;
        // SAFETY: `data` is valid for `size` bytes; libbpf copies it.
        let ptr = unsafe { sys::btf__new(data.as_ptr().cast(), size) };
        let ptr = NonNull::new(ptr).ok_or_else(|| last_error("cannot parse raw BTF"))?;
        // INVARIANT: a new `struct btf` we own, with no base.
        Ok(Self {
            ptr,
            _base: PhantomData,
        })
    }
}

/// A module's BTF split into a distilled base and split BTF on it, as pahole >= 1.28 writes
/// `.BTF.base` and `.BTF` (see [`Btf::distill`]).
pub struct Distilled {
    // Declared before `base`, so dropped first: it points to `base`.
    split: Btf<'static>,
    base: Btf<'static>,
}

impl Distilled {
    /// The raw `.BTF.base` (the distilled base) and `.BTF` (split on it).
    pub fn raw_data(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        Ok((self.base.raw_data()?, self.split.raw_data()?))
    }
}

impl<'base> Btf<'base> {
    /// Loads raw split BTF (the contents of a module's `.BTF`) on top of `base`.
    ///
    /// A section holding only the BTF header (no types, no strings), which is what pahole
    /// writes for a module without C types, gives an empty split BTF.
    pub fn new_split(data: &[u8], base: &'base Btf<'_>) -> Result<Self> {
        let header_only = data.len() >= 24
            && u32::from_ne_bytes(data[12..16].try_into()?) == 0
            && u32::from_ne_bytes(data[20..24].try_into()?) == 0;
        let ptr = if header_only || data.is_empty() {
            // SAFETY: `base.ptr` is a valid `struct btf` (type invariant) that outlives the
            // result thanks to the `'base` borrow.
            unsafe { sys::btf__new_empty_split(base.ptr.as_ptr()) }
        } else {
            let size = u32::try_from(data.len()).context("module .BTF is larger than 4 GiB")?;
            // SAFETY: `data` is valid for `size` bytes (libbpf copies it); `base.ptr` is valid
            // and outlives the result as above.
            unsafe { sys::btf__new_split(data.as_ptr().cast(), size, base.ptr.as_ptr()) }
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| last_error("cannot parse the module's .BTF"))?;
        // INVARIANT: a new `struct btf` we own, whose base is borrowed for `'base`.
        Ok(Self {
            ptr,
            _base: PhantomData,
        })
    }

    /// Moves split BTF onto another base that has the same types (libbpf's `btf__relocate()`):
    /// a module's BTF split on its distilled `.BTF.base` becomes BTF split on vmlinux, with the
    /// ids the kernel gives it when it loads the module.
    pub fn relocate<'b>(self, base: &'b Btf<'_>) -> Result<Btf<'b>> {
        // SAFETY: both pointers are valid `struct btf`s (type invariant).
        let ret = unsafe { sys::btf__relocate(self.ptr.as_ptr(), base.ptr.as_ptr()) };
        if ret < 0 {
            bail!(
                "cannot relocate the module's BTF onto vmlinux: {}",
                io::Error::from_raw_os_error(-ret)
            );
        }
        let ptr = self.ptr;
        std::mem::forget(self);
        // INVARIANT: libbpf made `base` the base of `ptr`, and no longer uses the old one; the
        // new value owns `ptr` (the old one was forgotten) and borrows `base` for `'b`.
        Ok(Btf {
            ptr,
            _base: PhantomData,
        })
    }

    /// Distills this split BTF (libbpf's `btf__distill_base()`): a minimal base holding what
    /// the split part refers to in its base, and the split part rebased onto it.
    pub fn distill(&self) -> Result<Distilled> {
        let mut base = std::ptr::null_mut();
        let mut split = std::ptr::null_mut();
        // SAFETY: `self.ptr` is valid; both out-pointers are valid.
        let ret = unsafe { sys::btf__distill_base(self.ptr.as_ptr(), &mut base, &mut split) };
        if ret < 0 {
            bail!(
                "cannot distill the module's base BTF: {}",
                io::Error::from_raw_os_error(-ret)
            );
        }
        let (Some(base), Some(split)) = (NonNull::new(base), NonNull::new(split)) else {
            bail!("libbpf distilled no BTF");
        };
        // INVARIANT: two new `struct btf`s we own; `split`'s base is `base`, which `Distilled`
        // drops last.
        Ok(Distilled {
            split: Btf {
                ptr: split,
                _base: PhantomData,
            },
            base: Btf {
                ptr: base,
                _base: PhantomData,
            },
        })
    }

    /// Number of types including the base's and the implicit `void` (id 0).
    pub fn type_cnt(&self) -> u32 {
        // SAFETY: `self.ptr` is valid (type invariant).
        unsafe { sys::btf__type_cnt(self.ptr.as_ptr()) }
    }

    /// The first type id of this BTF (1 for a base, the base's `type_cnt()` for split BTF).
    pub fn start_id(&self) -> u32 {
        // SAFETY: `self.ptr` is valid; `btf__base_btf` returns NULL or the (valid) base.
        let base = unsafe { sys::btf__base_btf(self.ptr.as_ptr()) };
        if base.is_null() {
            1
        } else {
            // SAFETY: `base` is the valid base BTF libbpf keeps for `self`.
            unsafe { sys::btf__type_cnt(base) }
        }
    }

    /// Finds a named type of the given kind, here or in the base; `None` when there is none.
    pub fn find(&self, name: &str, kind: Kind) -> Result<Option<u32>> {
        let cname = cstring(name)?;
        // SAFETY: `self.ptr` is valid and `cname` is NUL-terminated.
        let id =
            unsafe { sys::btf__find_by_name_kind(self.ptr.as_ptr(), cname.as_ptr(), kind.raw()) };
        Ok(u32::try_from(id).ok())
    }

    /// Decodes type `id`.
    pub fn type_info(&self, id: u32) -> Result<TypeInfo> {
        // SAFETY: `self.ptr` is valid; libbpf bounds-checks `id` and returns NULL when invalid.
        let t = unsafe { sys::btf__type_by_id(self.ptr.as_ptr(), id) };
        if t.is_null() {
            bail!("BTF type id {id} does not exist");
        }
        // SAFETY: `t` points to a `struct btf_type` inside `self`, valid while `self` is not
        // modified; we copy what we need before returning.
        let raw = unsafe { &*t };
        let kind = (raw.info >> 24) & 0x1f;
        let vlen = (raw.info & 0xffff) as u16;
        // SAFETY: both union members are `u32`; either reading is fine.
        let size_or_type = unsafe { raw.__bindgen_anon_1.size };
        let mut info = TypeInfo {
            kind,
            name: self.name(raw.name_off),
            size_or_type,
            vlen,
            params: Vec::new(),
            int_encoding: None,
            members: Vec::new(),
        };
        if kind == sys::BTF_KIND_INT {
            // SAFETY: an INT type is followed by one `u32` of encoding data.
            let word = unsafe { *(t.add(1) as *const u32) };
            info.int_encoding = Some((((word >> 24) & 0x0f) as u8, (word & 0xff) as u8));
        } else if kind == sys::BTF_KIND_FUNC_PROTO {
            // SAFETY: a FUNC_PROTO is followed by `vlen` `struct btf_param`s.
            let params = unsafe {
                std::slice::from_raw_parts(t.add(1) as *const sys::btf_param, usize::from(vlen))
            };
            info.params = params
                .iter()
                .map(|p| (self.name(p.name_off), p.type_))
                .collect();
        } else if kind == sys::BTF_KIND_STRUCT || kind == sys::BTF_KIND_UNION {
            // SAFETY: a STRUCT or UNION is followed by `vlen` `struct btf_member`s.
            let members = unsafe {
                std::slice::from_raw_parts(t.add(1) as *const sys::btf_member, usize::from(vlen))
            };
            // With `kind_flag` set, the offset's high 8 bits are a bitfield's size.
            let kflag = raw.info >> 31 != 0;
            info.members = members
                .iter()
                .filter(|m| !kflag || m.offset >> 24 == 0)
                .map(|m| {
                    let offset = if kflag {
                        m.offset & 0xff_ffff
                    } else {
                        m.offset
                    };
                    (self.name(m.name_off), m.type_, offset)
                })
                .collect();
        }
        Ok(info)
    }

    /// The C spelling of type `id` as the prefix of a declarator (`"const char *"`,
    /// `"struct task_struct *"`, `"unsigned int "`), as `bpftool btf dump ... format c` writes it.
    pub fn c_type(&self, id: u32) -> Result<String> {
        if id == 0 {
            return Ok("void ".to_owned());
        }
        let t = self.type_info(id)?;
        Ok(match t.kind {
            sys::BTF_KIND_INT | sys::BTF_KIND_TYPEDEF | sys::BTF_KIND_FLOAT => {
                format!("{} ", t.name)
            }
            sys::BTF_KIND_STRUCT => format!("struct {} ", t.name),
            sys::BTF_KIND_UNION => format!("union {} ", t.name),
            sys::BTF_KIND_ENUM | sys::BTF_KIND_ENUM64 => format!("enum {} ", t.name),
            sys::BTF_KIND_FWD => format!("struct {} ", t.name),
            sys::BTF_KIND_PTR => format!("{}*", self.c_type(t.size_or_type)?),
            sys::BTF_KIND_CONST => format!("const {}", self.c_type(t.size_or_type)?),
            sys::BTF_KIND_VOLATILE => format!("volatile {}", self.c_type(t.size_or_type)?),
            kind => bail!("BTF type {id} of kind {kind} has no C spelling here"),
        })
    }

    /// The C declaration of `FUNC` `id`: `"struct task_struct *f(struct task_struct *p)"`.
    pub fn c_declaration(&self, id: u32) -> Result<String> {
        let func = self.type_info(id)?;
        if func.kind != sys::BTF_KIND_FUNC {
            bail!("BTF type {id} is not a FUNC");
        }
        let proto = self.type_info(func.size_or_type)?;
        let mut s = format!("{}{}(", self.c_type(proto.size_or_type)?, func.name);
        if proto.params.is_empty() {
            s.push_str("void");
        }
        for (i, (name, ty)) in proto.params.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&self.c_type(*ty)?);
            s.push_str(name);
        }
        s.push(')');
        Ok(s)
    }

    /// The ids of the named types of `kind` in this BTF (not its base), by name; the first of
    /// several of the same name.
    pub fn ids_by_name(&self, kind: Kind) -> std::collections::HashMap<String, u32> {
        let mut out = std::collections::HashMap::new();
        for id in self.start_id()..self.type_cnt() {
            // SAFETY: `self.ptr` is valid and `id` is in range.
            let t = unsafe { sys::btf__type_by_id(self.ptr.as_ptr(), id) };
            // SAFETY: libbpf returned a type of `self` for an in-range id.
            let raw = unsafe { &*t };
            if (raw.info >> 24) & 0x1f == kind.raw() && raw.name_off != 0 {
                out.entry(self.name(raw.name_off)).or_insert(id);
            }
        }
        out
    }

    /// The size in bytes of type `id` (libbpf's `btf__resolve_size()`).
    pub fn size_of(&self, id: u32) -> Result<u32> {
        // SAFETY: `self.ptr` is valid; libbpf bounds-checks `id`.
        let size = unsafe { sys::btf__resolve_size(self.ptr.as_ptr(), id) };
        u32::try_from(size).map_err(|_| {
            anyhow!(
                "BTF type {id} has no size: {}",
                io::Error::from_raw_os_error(-size as i32)
            )
        })
    }

    /// The enumerators of `ENUM` `id`, as (name, value).
    pub fn enum_values(&self, id: u32) -> Result<Vec<(String, i64)>> {
        // SAFETY: `self.ptr` is valid; libbpf bounds-checks `id`.
        let t = unsafe { sys::btf__type_by_id(self.ptr.as_ptr(), id) };
        if t.is_null() {
            bail!("BTF type id {id} does not exist");
        }
        // SAFETY: `t` points to a `struct btf_type` inside `self`.
        let raw = unsafe { &*t };
        if (raw.info >> 24) & 0x1f != sys::BTF_KIND_ENUM {
            bail!("BTF type {id} is not an ENUM");
        }
        let vlen = (raw.info & 0xffff) as usize;
        // SAFETY: an ENUM is followed by `vlen` `struct btf_enum`s.
        let values = unsafe { std::slice::from_raw_parts(t.add(1) as *const sys::btf_enum, vlen) };
        Ok(values
            .iter()
            .map(|v| (self.name(v.name_off), i64::from(v.val)))
            .collect())
    }

    /// Every `DECL_TAG` as (value, target id, component index).
    pub fn decl_tags(&self) -> Result<Vec<(String, u32, i32)>> {
        let mut tags = Vec::new();
        for id in self.start_id()..self.type_cnt() {
            // SAFETY: `self.ptr` is valid and `id` is in range.
            let t = unsafe { sys::btf__type_by_id(self.ptr.as_ptr(), id) };
            // SAFETY: libbpf returned a type of `self` for an in-range id.
            let raw = unsafe { &*t };
            if (raw.info >> 24) & 0x1f == sys::BTF_KIND_DECL_TAG {
                // SAFETY: a DECL_TAG is followed by one `struct btf_decl_tag`.
                let idx = unsafe { (*(t.add(1) as *const sys::btf_decl_tag)).component_idx };
                // SAFETY: both members of the union are `u32`.
                let target = unsafe { raw.__bindgen_anon_1.type_ };
                tags.push((self.name(raw.name_off), target, idx));
            }
        }
        Ok(tags)
    }

    fn name(&self, off: u32) -> String {
        // SAFETY: `self.ptr` is valid; libbpf returns NULL for an out-of-range offset.
        let s = unsafe { sys::btf__name_by_offset(self.ptr.as_ptr(), off) };
        if s.is_null() {
            return String::new();
        }
        // SAFETY: libbpf returned a NUL-terminated string inside the BTF's string section.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }

    fn check_id(ret: c_int, what: &str) -> Result<u32> {
        u32::try_from(ret)
            .map_err(|_| anyhow!("libbpf: {what}: {}", io::Error::from_raw_os_error(-ret)))
    }

    /// Adds `PTR -> target`.
    pub fn add_ptr(&mut self, target: u32) -> Result<u32> {
        // SAFETY: `self.ptr` is valid and uniquely borrowed.
        let ret = unsafe { sys::btf__add_ptr(self.ptr.as_ptr(), target as c_int) };
        Self::check_id(ret, "adding a PTR")
    }

    /// Adds `CONST -> target`.
    pub fn add_const(&mut self, target: u32) -> Result<u32> {
        // SAFETY: `self.ptr` is valid and uniquely borrowed.
        let ret = unsafe { sys::btf__add_const(self.ptr.as_ptr(), target as c_int) };
        Self::check_id(ret, "adding a CONST")
    }

    /// Adds `ENUM name` of `size` bytes with the given enumerators.
    pub fn add_enum(&mut self, name: &str, size: u32, values: &[(String, i64)]) -> Result<u32> {
        let cname = cstring(name)?;
        // SAFETY: `self.ptr` is valid and uniquely borrowed; `cname` is NUL-terminated.
        let ret = unsafe { sys::btf__add_enum(self.ptr.as_ptr(), cname.as_ptr(), size) };
        let id = Self::check_id(ret, &format!("adding ENUM {name}"))?;
        for (vname, value) in values {
            let cvname = cstring(vname)?;
            // SAFETY: `self.ptr` is valid, the last added type is the ENUM as libbpf requires,
            // and `cvname` is NUL-terminated (libbpf copies it).
            let ret =
                unsafe { sys::btf__add_enum_value(self.ptr.as_ptr(), cvname.as_ptr(), *value) };
            if ret < 0 {
                bail!(
                    "libbpf: adding enumerator {vname} of {name}: {}",
                    io::Error::from_raw_os_error(-ret)
                );
            }
        }
        Ok(id)
    }

    /// Adds `STRUCT name` (or `UNION name`) of `size` bytes with the given members, each as
    /// (name, type id, offset in bits).
    pub fn add_struct(
        &mut self,
        name: &str,
        size: u32,
        union: bool,
        members: &[(String, u32, u32)],
    ) -> Result<u32> {
        let cname = cstring(name)?;
        let ret = if union {
            // SAFETY: `self.ptr` is valid and uniquely borrowed; `cname` is NUL-terminated.
            unsafe { sys::btf__add_union(self.ptr.as_ptr(), cname.as_ptr(), size) }
        } else {
            // SAFETY: as above.
            unsafe { sys::btf__add_struct(self.ptr.as_ptr(), cname.as_ptr(), size) }
        };
        let id = Self::check_id(ret, &format!("adding STRUCT {name}"))?;
        for (mname, ty, offset) in members {
            let cmname = cstring(mname)?;
            // SAFETY: `self.ptr` is valid, the last added type is the STRUCT or UNION as libbpf
            // requires, and `cmname` is NUL-terminated (libbpf copies it).
            let ret = unsafe {
                sys::btf__add_field(self.ptr.as_ptr(), cmname.as_ptr(), *ty as c_int, *offset, 0)
            };
            if ret < 0 {
                bail!(
                    "libbpf: adding member {mname} of {name}: {}",
                    io::Error::from_raw_os_error(-ret)
                );
            }
        }
        Ok(id)
    }

    /// Adds `FUNC_PROTO` with the given return type and named parameters.
    pub fn add_func_proto(&mut self, ret: u32, params: &[(String, u32)]) -> Result<u32> {
        // SAFETY: `self.ptr` is valid and uniquely borrowed.
        let id = unsafe { sys::btf__add_func_proto(self.ptr.as_ptr(), ret as c_int) };
        let id = Self::check_id(id, "adding a FUNC_PROTO")?;
        for (name, ty) in params {
            let cname = cstring(name)?;
            // SAFETY: `self.ptr` is valid, the last added type is the FUNC_PROTO as libbpf
            // requires, and `cname` is NUL-terminated (libbpf copies it).
            let ret = unsafe {
                sys::btf__add_func_param(self.ptr.as_ptr(), cname.as_ptr(), *ty as c_int)
            };
            if ret < 0 {
                bail!(
                    "libbpf: adding parameter {name}: {}",
                    io::Error::from_raw_os_error(-ret)
                );
            }
        }
        Ok(id)
    }

    /// Adds a `FUNC` named `name` of prototype `proto`, with the linkage pahole gives every
    /// function it encodes (`static`, whatever the C linkage).
    pub fn add_func(&mut self, name: &str, proto: u32) -> Result<u32> {
        let cname = cstring(name)?;
        // SAFETY: `self.ptr` is valid and uniquely borrowed; `cname` is NUL-terminated.
        let ret = unsafe {
            sys::btf__add_func(
                self.ptr.as_ptr(),
                cname.as_ptr(),
                sys::BTF_FUNC_STATIC,
                proto as c_int,
            )
        };
        Self::check_id(ret, &format!("adding FUNC {name}"))
    }

    /// Adds `DECL_TAG value` on type `target` (`component_idx` -1: the type itself, else the
    /// index of a parameter or member).
    pub fn add_decl_tag(&mut self, value: &str, target: u32, component_idx: i32) -> Result<u32> {
        let cvalue = cstring(value)?;
        // SAFETY: `self.ptr` is valid and uniquely borrowed; `cvalue` is NUL-terminated.
        let ret = unsafe {
            sys::btf__add_decl_tag(
                self.ptr.as_ptr(),
                cvalue.as_ptr(),
                target as c_int,
                component_idx,
            )
        };
        Self::check_id(ret, &format!("adding DECL_TAG {value}"))
    }

    /// The raw BTF of this object (for split BTF: its own types and strings only).
    pub fn raw_data(&self) -> Result<Vec<u8>> {
        let mut size = 0u32;
        // SAFETY: `self.ptr` is valid; `size` is a valid out-pointer.
        let data = unsafe { sys::btf__raw_data(self.ptr.as_ptr(), &mut size) };
        if data.is_null() {
            return Err(last_error("cannot serialise BTF"));
        }
        // SAFETY: libbpf returned a buffer of `size` bytes owned by `self`; we copy it.
        Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) }.to_vec())
    }
}

impl Drop for Btf<'_> {
    fn drop(&mut self) {
        // SAFETY: we own `self.ptr` (type invariant) and never use it again.
        unsafe { sys::btf__free(self.ptr.as_ptr()) };
    }
}
