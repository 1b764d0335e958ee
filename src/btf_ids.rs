// SPDX-License-Identifier: GPL-2.0

//! BTF id sets declared from Rust.
//!
//! The Rust twin of the kfunc part of `include/linux/btf_ids.h`: [`btf_kfunc_set!`] emits the same
//! `.BTF_ids` layout as `BTF_KFUNCS_START()` / `BTF_ID_FLAGS(func, ...)` / `BTF_KFUNCS_END()`, so
//! the kernel's `resolve_btfids` fills in the BTF ids and sorts the set when the module is linked,
//! exactly as it does for a C module. The flag values mirror `include/linux/btf.h`.
//!
//! This file depends on `core` only, so host tests can include it with `#[path]` and compare its
//! output with what the C macros produce.
//!
//! C header: [include/linux/btf_ids.h](srctree/include/linux/btf_ids.h)

// The flag table mirrors `include/linux/btf.h` in full; a module's sets use only some of it.
#![allow(dead_code)]

/// `struct btf_id_set8.flags`: the set holds kfuncs (`BTF_SET8_KFUNCS`).
pub(crate) const BTF_SET8_KFUNCS: u32 = 1 << 0;

/// The kfunc returns a new reference the program must release (`KF_ACQUIRE`).
pub(crate) const KF_ACQUIRE: u32 = 1 << 0;
/// The kfunc releases the reference passed as its first argument (`KF_RELEASE`).
pub(crate) const KF_RELEASE: u32 = 1 << 1;
/// The kfunc may return NULL; the program must check before use (`KF_RET_NULL`).
pub(crate) const KF_RET_NULL: u32 = 1 << 2;
/// The kfunc only takes trusted pointer arguments (`KF_TRUSTED_ARGS`).
pub(crate) const KF_TRUSTED_ARGS: u32 = 1 << 4;
/// The kfunc may sleep: only sleepable programs can call it (`KF_SLEEPABLE`).
pub(crate) const KF_SLEEPABLE: u32 = 1 << 5;
/// The kfunc performs destructive actions (`KF_DESTRUCTIVE`).
pub(crate) const KF_DESTRUCTIVE: u32 = 1 << 6;
/// The kfunc takes RCU-protected or trusted pointer arguments (`KF_RCU`).
pub(crate) const KF_RCU: u32 = 1 << 7;
/// The kfunc is a BPF iterator constructor (`KF_ITER_NEW`).
pub(crate) const KF_ITER_NEW: u32 = 1 << 8;
/// The kfunc is a BPF iterator `next` method (`KF_ITER_NEXT`).
pub(crate) const KF_ITER_NEXT: u32 = 1 << 9;
/// The kfunc is a BPF iterator destructor (`KF_ITER_DESTROY`).
pub(crate) const KF_ITER_DESTROY: u32 = 1 << 10;
/// The kfunc must be called inside an RCU read-side critical section (`KF_RCU_PROTECTED`).
pub(crate) const KF_RCU_PROTECTED: u32 = 1 << 11;

/// A kfunc id set emitted into `.BTF_ids` by [`btf_kfunc_set!`].
///
/// It stands for the C `struct btf_id_set8` that `BTF_KFUNCS_START(name)` declares; pass
/// [`BtfKfuncSet::as_ptr`] as `struct btf_kfunc_id_set.set`.
///
/// # Invariants
///
/// `start` is the address of the set's `struct btf_id_set8` in the `.BTF_ids` section, which
/// lives as long as the module (or program) that contains it and holds [`BtfKfuncSet::len`]
/// entries.
pub(crate) struct BtfKfuncSet {
    start: *const u8,
    len: u32,
}

// SAFETY: the set is plain data that is written only at build time (by `resolve_btfids`); sharing
// its address between threads is harmless.
unsafe impl Sync for BtfKfuncSet {}

impl BtfKfuncSet {
    /// Wraps the address of a set emitted by [`btf_kfunc_set!`]; not meant to be called directly.
    ///
    /// # Safety
    ///
    /// `start` must be the address of a `struct btf_id_set8` with `len` entries in `.BTF_ids`
    /// that lives for `'static`.
    #[doc(hidden)]
    pub(crate) const unsafe fn from_raw(start: *const u8, len: u32) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self { start, len }
    }

    /// The address of the set, for `struct btf_kfunc_id_set.set`.
    ///
    /// The kernel only reads through this pointer; the C field is `struct btf_id_set8 *`
    /// without `const`, hence `*mut`.
    pub(crate) fn as_ptr(&self) -> *mut core::ffi::c_void {
        self.start.cast_mut().cast()
    }

    /// The number of kfuncs in the set.
    pub(crate) const fn len(&self) -> u32 {
        self.len
    }

    /// Whether the set has no kfuncs.
    pub(crate) const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Declares a kfunc id set, the Rust equivalent of `BTF_KFUNCS_START` / `BTF_ID_FLAGS` /
/// `BTF_KFUNCS_END`.
///
/// Each entry names a function and the `KF_*` flags the verifier applies to it; the flags are
/// constant expressions evaluated in the caller's scope. The macro emits, with
/// [`core::arch::global_asm!`], the layout `include/linux/btf_ids.h` produces (section
/// `.BTF_ids`, flags `"a"`):
///
/// ```text
/// NAME:                               global, hidden: the address `as_ptr()` returns
/// __BTF_ID__set8__NAME:               local, size 8 + 8 * n
///     .zero 4                         cnt, filled by resolve_btfids
///     .long BTF_SET8_KFUNCS
/// __BTF_ID__func__<fn>__<unique>:     local STT_OBJECT, size 4, once per entry
///     .zero 4                         BTF id of <fn>, filled by resolve_btfids
///     .long <flags>
/// ```
///
/// and a `static NAME: BtfKfuncSet` that gives the set's address. Every listed name must be a
/// function in scope with an unmangled symbol (`#[no_mangle]`) equal to its name: a typo is a
/// compile error, a mangled function is an assembler error. Set names must be unique in the
/// crate, like the C ones are per object.
///
/// The file must be the crate-root module `btf_ids` (the expansion names `$crate::btf_ids`);
/// `use crate::btf_ids::*;` brings the macro and the flags into scope.
///
/// # Examples
///
/// ```ignore
/// use crate::btf_ids::*;
///
/// btf_kfunc_set! {
///     /// The task kfuncs.
///     pub(crate) static TASK_KFUNC_SET = {
///         rust_task_acquire: KF_ACQUIRE | KF_TRUSTED_ARGS | KF_RET_NULL,
///         rust_task_release: KF_RELEASE,
///     };
/// }
///
/// let set = bindings::btf_kfunc_id_set {
///     owner: module.as_ptr(),
///     set: TASK_KFUNC_SET.as_ptr().cast(),
///     filter: None,
/// };
/// ```
macro_rules! btf_kfunc_set {
    (
        $(#[$meta:meta])*
        $vis:vis static $name:ident = {
            $($func:ident : $flags:expr),+ $(,)?
        };
    ) => {
        ::core::arch::global_asm!(
            ".pushsection .BTF_ids,\"a\"",
            // `NAME` is global (but hidden) so that the static below can refer to it from any
            // codegen unit; the C macros make it local because C needs no such reference.
            ::core::concat!(".globl ", ::core::stringify!($name)),
            ::core::concat!(".hidden ", ::core::stringify!($name)),
            ::core::concat!(::core::stringify!($name), ":"),
            ::core::concat!(".local __BTF_ID__set8__", ::core::stringify!($name)),
            ::core::concat!("__BTF_ID__set8__", ::core::stringify!($name), ":"),
            ".zero 4",
            ".long {set_flags}",
            // One entry as `BTF_ID_FLAGS(func, name, flags)`; `\@` (the assembler's count of
            // macro expansions) plays the part of `__COUNTER__` for unique local symbols.
            ".macro __btf_kfunc_entry name, symbol, flags",
            ".ifnc \\name, \\symbol",
            ".error \"kfunc \\name: symbol \\symbol differs from its name, add #[no_mangle]\"",
            ".endif",
            ".local __BTF_ID__func__\\name\\()__\\@",
            ".type __BTF_ID__func__\\name\\()__\\@, STT_OBJECT",
            ".size __BTF_ID__func__\\name\\()__\\@, 4",
            "__BTF_ID__func__\\name\\()__\\@:",
            ".zero 4",
            ".long \\flags",
            ".endm",
            $(
                ::core::concat!("__btf_kfunc_entry ", ::core::stringify!($func), ", {}, {}"),
            )+
            ".purgem __btf_kfunc_entry",
            ::core::concat!(
                ".size __BTF_ID__set8__", ::core::stringify!($name),
                ", . - ", ::core::stringify!($name)
            ),
            ".popsection",
            $(
                // `sym` makes the compiler resolve the name: a typo fails the build.
                sym $func,
                const { let flags: u32 = $flags; flags },
            )+
            set_flags = const $crate::btf_ids::BTF_SET8_KFUNCS,
            options(att_syntax)
        );

        $(#[$meta])*
        $vis static $name: $crate::btf_ids::BtfKfuncSet = {
            extern "C" {
                #[link_name = ::core::stringify!($name)]
                static SET: u8;
            }
            const LEN: usize = [$(::core::stringify!($func)),+].len();
            // SAFETY: `SET` is the `struct btf_id_set8` emitted into `.BTF_ids` above, with one
            // entry per listed function; it is part of this object, so it lives for `'static`.
            unsafe { $crate::btf_ids::BtfKfuncSet::from_raw(&raw const SET, LEN as u32) }
        };
    };
}
pub(crate) use btf_kfunc_set;
