// SPDX-License-Identifier: GPL-2.0

//! libbpf plumbing every suite uses, as the kernel's test_loader does for
//! its selftests: the objects built from `progs/` ([`Obj`]), the
//! annotations each program carries as BTF decl tags (`progs/selftest.h`),
//! one open → select → load ([`Obj::load`]), programs, maps and globals by
//! name ([`Loaded`]), the trigger a program's section implies
//! ([`Loaded::trigger`]), the verdict a program leaves ([`Loaded::verdict`]),
//! and the capture of libbpf's output, which carries the verifier log.
//!
//! [`table`] turns an object into cases: a `__failure` program must be
//! rejected with its `__msg`s, any other must load, run when triggered and
//! leave a passing verdict.

use std::ffi::OsStr;
use std::io::Read;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use libbpf_rs::btf::types::{DataSec, DeclTag, Func, Var};
use libbpf_rs::btf::{Btf, ReferencesType};
use libbpf_rs::{
    Iter, Link, Map, MapCore, MapFlags, MapMut, Object, ObjectBuilder, PrintLevel, ProgramInput,
    ProgramMut,
};

use crate::process;
use crate::{Case, Outcome};

/// A BPF object built from `progs/` (by build.rs) and embedded in the runner.
#[derive(Clone, Copy)]
pub struct Obj {
    /// Its path under `$OUT_DIR`, without `.bpf.o` (`rust/task_kfuncs_success`).
    pub name: &'static str,
    pub bytes: &'static [u8],
}

/// The object `$OUT_DIR/<path>.bpf.o`, embedded: each suite names its own.
#[macro_export]
macro_rules! obj {
    ($path:literal) => {
        $crate::bpf::Obj {
            name: $path,
            bytes: include_bytes!(concat!(env!("OUT_DIR"), "/", $path, ".bpf.o")),
        }
    };
}

/// Everything libbpf printed since the last [`take_log`].
static LOG: Mutex<String> = Mutex::new(String::new());

/// Routes libbpf's messages (verifier logs included) into the capture buffer.
pub fn capture_libbpf_output() {
    libbpf_rs::set_print(Some((PrintLevel::Debug, |_, msg| {
        if let Ok(mut log) = LOG.lock() {
            log.push_str(&msg);
        }
    })));
}

/// Returns and clears what libbpf printed since the last call.
pub fn take_log() -> String {
    LOG.lock()
        .map(|mut log| std::mem::take(&mut *log))
        .unwrap_or_default()
}

/// A failed case from an error, with what libbpf printed.
pub fn failed(e: anyhow::Error) -> Outcome {
    Outcome::fail_with_log(format!("{e:#}"), take_log())
}

/// One program of an object, with the annotations of progs/selftest.h
/// (the decl tags of its BTF `FUNC`).
#[derive(Debug, Default, Clone)]
pub struct Prog {
    pub name: String,
    /// `__failure`: the verifier must reject the program.
    pub failure: bool,
    /// `__msg(...)`: strings the verifier log must contain.
    pub msgs: Vec<String>,
    /// `__c_skip(...)`: why the case is skipped in this build.
    pub skip: Option<String>,
}

impl Obj {
    fn btf(self) -> Result<Btf<'static>> {
        Btf::from_raw(self.name, self.bytes)
            .with_context(|| format!("parsing the BTF of {}", self.name))?
            .with_context(|| format!("{} has no BTF", self.name))
    }

    /// Every program, in the object's order, with its annotations.
    pub fn progs(self) -> Result<Vec<Prog>> {
        let open = ObjectBuilder::default()
            .open_memory(self.bytes)
            .with_context(|| format!("opening {}", self.name))?;
        let mut progs: Vec<Prog> = open
            .progs()
            .map(|p| Prog {
                name: p.name().to_string_lossy().into_owned(),
                ..Prog::default()
            })
            .collect();
        let btf = self.btf()?;
        for tag in btf.type_by_kind::<DeclTag<'_>>() {
            let Some(text) = tag.name().and_then(OsStr::to_str) else {
                continue;
            };
            let Some(text) = text.strip_prefix("task_kfuncs:") else {
                continue;
            };
            let Ok(func) = Func::try_from(tag.referenced_type()) else {
                continue;
            };
            let name = func.name().and_then(OsStr::to_str).unwrap_or_default();
            let Some(prog) = progs.iter_mut().find(|p| p.name == name) else {
                bail!(
                    "{}: {text:?} annotates {name}, which is no program",
                    self.name
                );
            };
            if text == "failure" {
                prog.failure = true;
            } else if let Some(msg) = text.strip_prefix("msg=") {
                prog.msgs.push(msg.to_owned());
            } else if let Some(why) = text.strip_prefix("skip=") {
                prog.skip = Some(why.to_owned());
            } else {
                bail!("{}: {name} has an unknown annotation {text:?}", self.name);
            }
        }
        Ok(progs)
    }

    /// Opens the object with only `progs` to load (all of them when empty)
    /// and loads it.
    pub fn load(self, progs: &[&str]) -> Result<Loaded> {
        let mut open = ObjectBuilder::default()
            .open_memory(self.bytes)
            .with_context(|| format!("opening {}", self.name))?;
        let mut found = 0;
        for mut p in open.progs_mut() {
            let this = progs.is_empty() || progs.iter().any(|n| p.name() == *n);
            found += usize::from(this);
            p.set_autoload(this);
        }
        if !progs.is_empty() && found != progs.len() {
            bail!("{} lacks one of the programs {progs:?}", self.name);
        }
        let obj = open
            .load()
            .with_context(|| format!("loading {progs:?} of {}", self.name))?;
        Ok(Loaded { obj, from: self })
    }
}

/// A scalar global of a BPF program.
pub trait Scalar: Copy {
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
    fn to_bytes(self) -> Vec<u8>;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn from_bytes(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_ne_bytes(bytes.try_into().ok()?))
            }
            fn to_bytes(self) -> Vec<u8> {
                self.to_ne_bytes().to_vec()
            }
        }
    )*};
}
scalar!(i32, u32, i64, u64);

/// A loaded object.
pub struct Loaded {
    obj: Object,
    from: Obj,
}

impl Loaded {
    /// A loaded program, by name.
    pub fn prog(&self, name: &str) -> Result<ProgramMut<'_>> {
        self.obj
            .progs_mut()
            .find(|p| p.name() == name)
            .with_context(|| format!("no program {name} loaded from {}", self.from.name))
    }

    /// A map, by name; `.bss`, `.data` and `.rodata` are found by their
    /// suffix (libbpf prefixes them with part of the object's name).
    pub fn map(&self, name: &str) -> Result<Map<'_>> {
        self.obj
            .maps()
            .find(|m| {
                let n = m.name().to_string_lossy();
                n == name || (name.starts_with('.') && n.ends_with(name))
            })
            .with_context(|| format!("no map {name} in {}", self.from.name))
    }

    /// A map, by name, for what needs it mutable (attaching struct_ops).
    pub fn map_mut(&mut self, name: &str) -> Result<MapMut<'_>> {
        let from = self.from.name;
        self.obj
            .maps_mut()
            .find(|m| m.name() == name)
            .with_context(|| format!("no map {name} in {from}"))
    }

    /// The section, offset and size of the global `name`.
    fn var(&self, name: &str) -> Result<(String, usize, usize)> {
        let btf = self.from.btf()?;
        for sec in btf.type_by_kind::<DataSec<'_>>() {
            let sec_name = sec.name().and_then(OsStr::to_str).unwrap_or_default();
            for v in sec.iter() {
                let var: Option<Var<'_>> = btf.type_by_id(v.ty);
                if var.and_then(|var| var.name()).is_some_and(|n| n == name) {
                    return Ok((sec_name.to_owned(), v.offset as usize, v.size));
                }
            }
        }
        bail!("{} has no global {name}", self.from.name)
    }

    /// Whether the object has a global `name`.
    pub fn has(&self, name: &str) -> bool {
        self.var(name).is_ok()
    }

    /// The bytes of the global `name`, read through the map of its section.
    pub fn get_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let (sec, offset, size) = self.var(name)?;
        let value = self
            .map(&sec)?
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("reading {sec}"))?
            .with_context(|| format!("{sec} has no value"))?;
        value
            .get(offset..offset + size)
            .map(<[u8]>::to_vec)
            .with_context(|| format!("{name} lies outside {sec}"))
    }

    /// The global `name`.
    pub fn get<T: Scalar>(&self, name: &str) -> Result<T> {
        T::from_bytes(&self.get_bytes(name)?)
            .with_context(|| format!("{name} is not of the size asked for"))
    }

    /// Sets the global `name`. Read-modify-write of its whole section: only
    /// while no program that writes that section runs.
    pub fn set<T: Scalar>(&self, name: &str, value: T) -> Result<()> {
        self.set_bytes(name, &value.to_bytes())
    }

    /// Sets the global `name` to `bytes`, as [`Loaded::set`].
    pub fn set_bytes(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let (sec, offset, size) = self.var(name)?;
        if bytes.len() != size {
            bail!("{name} has {size} bytes, the value {}", bytes.len());
        }
        let map = self.map(&sec)?;
        let key = 0u32.to_ne_bytes();
        let mut data = map
            .lookup(&key, MapFlags::ANY)?
            .with_context(|| format!("{sec} has no value"))?;
        data[offset..offset + size].copy_from_slice(bytes);
        map.update(&key, &data, MapFlags::ANY)
            .with_context(|| format!("writing {name}"))
    }

    /// Sets the globals every selftest program may read (progs/selftest.h):
    /// `target_tgid` (the runner) and `pid_max`, where the object has them.
    pub fn set_runner_globals(&self) -> Result<()> {
        if self.has("target_tgid") {
            self.set("target_tgid", std::process::id() as i32)?;
        }
        if self.has("pid_max") {
            self.set("pid_max", process::pid_max()?)?;
        }
        Ok(())
    }

    /// One BPF_PROG_TEST_RUN of `prog` with `ctx` as its context (copied
    /// back into it for syscall programs); returns the program's value.
    pub fn test_run(&self, prog: &str, ctx: &mut [u8]) -> Result<u32> {
        let input = ProgramInput {
            context_in: (!ctx.is_empty()).then_some(ctx),
            ..Default::default()
        };
        let out = self
            .prog(prog)?
            .test_run(input)
            .with_context(|| format!("BPF_PROG_TEST_RUN of {prog}"))?;
        Ok(out.return_value)
    }

    /// Attaches `prog`.
    pub fn attach(&self, prog: &str) -> Result<Link> {
        self.prog(prog)?
            .attach()
            .with_context(|| format!("attaching {prog}"))
    }

    /// Makes `prog` run as its section says: a test run of a syscall
    /// program (its context: `{ 0, the runner's pid }`, two ints, see
    /// progs/selftest.h), a read of an iterator, and for every other type
    /// (the tracing ones: tp_btf, fentry, fexit, LSM task_alloc, the
    /// sched_process_fork tracepoint) a child forked and reaped, then a
    /// getpgid(2) (what the programs on sys_getpgid wait for), while it is
    /// attached.
    pub fn trigger(&self, prog: &str) -> Result<()> {
        let section = self.prog(prog)?.section().to_string_lossy().into_owned();
        if section == "syscall" {
            let mut args = [0, std::process::id() as i32]
                .map(i32::to_ne_bytes)
                .concat();
            match self.test_run(prog, &mut args)? {
                0 => Ok(()),
                ret => bail!("{prog} returned {ret}"),
            }
        } else if section.starts_with("iter") {
            let link = self.attach(prog)?;
            let mut out = Vec::new();
            Iter::new(&link)
                .and_then(|mut it| Ok(it.read_to_end(&mut out)?))
                .with_context(|| format!("reading the iterator {prog}"))?;
            Ok(())
        } else {
            let _link = self.attach(prog)?;
            process::spawn_and_reap()?;
            // SAFETY: getpgid(2) has no memory-safety preconditions.
            if unsafe { libc::getpgid(0) } < 0 {
                bail!("getpgid: {}", std::io::Error::last_os_error());
            }
            Ok(())
        }
    }

    /// The verdict a selftest program left (progs/selftest.h): it must have
    /// run (`runs`) and passed every check (`err`, the line of the first
    /// failed one).
    pub fn verdict(&self) -> Result<Outcome> {
        let (runs, err) = (self.get::<i32>("runs")?, self.get::<i32>("err")?);
        Ok(if runs == 0 {
            Outcome::fail("the program never ran")
        } else if err != 0 {
            Outcome::fail(format!(
                "check at {}.bpf.c:{err} failed\n{}",
                self.from.name.rsplit('/').next().unwrap_or(self.from.name),
                self.globals()
            ))
        } else {
            Outcome::Pass
        })
    }

    /// Every 4- or 8-byte global and its value, for a failure's reason.
    pub fn globals(&self) -> String {
        let Ok(btf) = self.from.btf() else {
            return String::new();
        };
        let mut out = Vec::new();
        for sec in btf.type_by_kind::<DataSec<'_>>() {
            for v in sec.iter() {
                let var: Option<Var<'_>> = btf.type_by_id(v.ty);
                let Some(name) = var.and_then(|v| v.name()).and_then(OsStr::to_str) else {
                    continue;
                };
                let value = match v.size {
                    4 => self.get::<i32>(name).map(i64::from),
                    8 => self.get::<i64>(name),
                    _ => continue,
                };
                if let Ok(value) = value {
                    out.push(format!("{name} {value}"));
                }
            }
        }
        out.join(", ")
    }
}

/// Loads `prog` of `obj` alone: the verifier must reject it, and its log
/// must contain every one of `msgs`.
pub fn expect_rejected(obj: Obj, prog: &str, msgs: &[String], verbose: bool) -> Outcome {
    let _ = take_log();
    let loaded = obj.load(&[prog]);
    let log = take_log();
    if loaded.is_ok() {
        return Outcome::fail_with_log("the verifier accepted the program", log);
    }
    if msgs.is_empty() {
        return Outcome::fail(format!(
            "{prog} is marked __failure but has no __msg(): say what it must be rejected with"
        ));
    }
    match msgs.iter().find(|msg| !log.contains(msg.as_str())) {
        Some(missing) => Outcome::fail_with_log(format!("verifier log lacks \"{missing}\""), log),
        None => {
            if verbose {
                println!("# {prog}: rejected with: {}", verifier_verdict(&log));
            }
            Outcome::Pass
        }
    }
}

/// Loads `prog` alone, triggers it and returns its verdict.
pub fn expect_success(obj: Obj, prog: &str) -> Result<Outcome> {
    let loaded = obj.load(&[prog])?;
    loaded.set_runner_globals()?;
    loaded.trigger(prog)?;
    loaded.verdict()
}

/// One case per program of `obj`, in the object's order, named
/// `{prefix}{program}`: `__failure` programs must be rejected with their
/// `__msg`s, the others must pass [`expect_success`]. Programs named in
/// `custom` are driven by cases of their own and left out.
pub fn table(obj: Obj, prefix: &str, custom: &[&str]) -> Result<Vec<Case>> {
    Ok(obj
        .progs()?
        .into_iter()
        .filter(|p| !custom.contains(&p.name.as_str()))
        .map(|p| {
            Case::new(format!("{prefix}{}", p.name), move |ctx| {
                if let Some(why) = p.skip {
                    Outcome::Skip(why)
                } else if p.failure {
                    expect_rejected(obj, &p.name, &p.msgs, ctx.verbose)
                } else {
                    expect_success(obj, &p.name).unwrap_or_else(failed)
                }
            })
        })
        .collect())
}

/// The verifier's last word: its last line before libbpf's end-of-log
/// marker, skipping the statistics it appends.
fn verifier_verdict(log: &str) -> &str {
    log.lines()
        .take_while(|line| !line.contains("-- END PROG LOAD LOG --"))
        .filter(|line| {
            !line.trim().is_empty()
                && !line.starts_with("processed ")
                && !line.starts_with("verification time")
                && !line.starts_with("stack depth")
        })
        .last()
        .unwrap_or("(no verifier log)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_skips_statistics() {
        let log = "0: R1=ctx()\nR1 must be a rcu pointer\nprocessed 10 insns\n\
                   -- END PROG LOAD LOG --\nlibbpf: failed";
        assert_eq!(verifier_verdict(log), "R1 must be a rcu pointer");
    }
}
