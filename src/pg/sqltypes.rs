//! SQL types pgrx does not map by itself: `regclass`, `name` and `name[]`.
//!
//! Each is a thin newtype so that `#[pg_extern]` signatures carry exactly the SQL types of the
//! documented API (`source regclass`, `id_column name`, `user_columns name[]`).

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;

/// Lets a type with FromDatum/IntoDatum be a `#[pg_extern]` argument and return value.
macro_rules! abi_via_datum {
    ($t:ty) => {
        // SAFETY: an argument is unboxed through the type's FromDatum, which reads the datum as the
        // SQL type `impl_sql_translatable!` declares for it, the type PostgreSQL passes.
        unsafe impl<'fcx> ArgAbi<'fcx> for $t {
            /// Unboxes a non-NULL argument (NULL ones arrive as `Option::None`).
            unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
                let index = arg.index();
                // SAFETY: pgrx calls this for an argument of the SQL type declared for this type,
                // which FromDatum reads; a NULL one is refused with a panic rather than read.
                unsafe { arg.unbox_arg_using_from_datum() }
                    .unwrap_or_else(|| panic!("argument {index} must not be NULL"))
            }
        }

        // SAFETY: `box_into` returns, through fcinfo, a datum of the declared SQL type or SQL NULL.
        unsafe impl BoxRet for $t {
            /// Returns the value as its datum.
            unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
                match self.into_datum() {
                    // SAFETY: `d` is a datum of the function's declared return type, allocated
                    // (when by reference) in the current memory context, which lives as long as the
                    // caller needs the result.
                    Some(d) => unsafe { fcinfo.return_raw_datum(d) },
                    None => fcinfo.return_null(),
                }
            }
        }
    };
}

/// A relation, given by name or OID, resolved by Postgres' `regclass` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegClass(pub pg_sys::Oid);
impl_sql_translatable!(RegClass, "regclass");

impl FromDatum for RegClass {
    /// Reads the OID behind a regclass datum.
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            None
        } else {
            Some(RegClass(pg_sys::Oid::from(datum.value() as u32)))
        }
    }
}

impl IntoDatum for RegClass {
    /// A regclass datum is the OID itself.
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0))
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
    fn is_compatible_with(other: pg_sys::Oid) -> bool {
        other == pg_sys::REGCLASSOID || other == pg_sys::OIDOID
    }
}

abi_via_datum!(RegClass);

/// An SQL identifier of type `name` (at most 63 bytes), as Rust text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(pub String);
impl_sql_translatable!(Name, "name");

impl FromDatum for Name {
    /// Reads a `name` datum: a pointer to a NUL-terminated NameData.
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: a non-NULL name datum points at a NameData, whose NAMEDATALEN bytes always hold a
        // NUL, alive for this call; it is copied at once.
        let cstr = unsafe { CStr::from_ptr(datum.cast_mut_ptr::<std::ffi::c_char>()) };
        Some(Name(cstr.to_string_lossy().into_owned()))
    }
}

impl IntoDatum for Name {
    /// Copies the text into a palloc'd NameData, cut at 63 bytes on a character boundary.
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let mut end = self.0.len().min(pg_sys::NAMEDATALEN as usize - 1);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        // SAFETY: palloc0 gives NAMEDATALEN zeroed bytes in the current memory context, and at most
        // NAMEDATALEN - 1 bytes are copied into them, so the NameData stays NUL-terminated.
        unsafe {
            let buf = pg_sys::palloc0(pg_sys::NAMEDATALEN as usize).cast::<u8>();
            std::ptr::copy_nonoverlapping(self.0.as_ptr(), buf, end);
            Some(pg_sys::Datum::from(buf))
        }
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::NAMEOID
    }
}

abi_via_datum!(Name);

/// A `name[]` value as a list of Rust strings; NULL elements are refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameArray(pub Vec<String>);
impl_sql_translatable!(NameArray, "name[]");

impl FromDatum for NameArray {
    /// Deconstructs a one-dimensional `name[]` (NULL elements become an error at use).
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: a non-NULL name[] datum, detoasted; deconstruct_array gets name's own length,
        // by-value flag and alignment (it checks the element type) and sets `n` and the `elems` and
        // `nulls` arrays of n entries, palloc'd in the current memory context; a NULL element
        // raises an error (`raise` does not return) before it is read, and every other one points
        // at a NameData.
        unsafe {
            let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
            let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
            let mut nulls: *mut bool = std::ptr::null_mut();
            let mut n: i32 = 0;
            pg_sys::deconstruct_array(
                array,
                pg_sys::NAMEOID,
                pg_sys::NAMEDATALEN as i32,
                false,
                pg_sys::TYPALIGN_CHAR as std::ffi::c_char,
                &mut elems,
                &mut nulls,
                &mut n,
            );
            let mut out = Vec::with_capacity(n as usize);
            for i in 0..n as usize {
                if *nulls.add(i) {
                    crate::pg::error::raise(qobra_sync_core::Error::new(
                        qobra_sync_core::SqlState::NullValueNotAllowed,
                        "a column list must not contain NULL",
                    ));
                }
                let cstr = CStr::from_ptr((*elems.add(i)).cast_mut_ptr::<std::ffi::c_char>());
                out.push(cstr.to_string_lossy().into_owned());
            }
            Some(NameArray(out))
        }
    }
}

impl IntoDatum for NameArray {
    /// Builds a `name[]` from the strings.
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let datums: Vec<pg_sys::Datum> = self
            .0
            .into_iter()
            .filter_map(|s| Name(s).into_datum())
            .collect();
        // SAFETY: construct_array copies the `datums` (NameData pointers from Name::into_datum,
        // alive for the call) with name's own length, by-value flag and alignment; it only reads
        // the array, despite the *mut cast.
        unsafe {
            let array = pg_sys::construct_array(
                datums.as_ptr() as *mut pg_sys::Datum,
                datums.len() as i32,
                pg_sys::NAMEOID,
                pg_sys::NAMEDATALEN as i32,
                false,
                pg_sys::TYPALIGN_CHAR as std::ffi::c_char,
            );
            Some(pg_sys::Datum::from(array))
        }
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::NAMEARRAYOID
    }
}

abi_via_datum!(NameArray);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::pg::sqltypes::{Name, NameArray};
    use pgrx::prelude::*;

    #[pg_test]
    fn name_types_round_trip_through_postgres() {
        let n = Spi::get_one_with_args::<Name>("SELECT $1::text::name", &["owner_email".into()])
            .unwrap();
        assert_eq!(n, Some(Name("owner_email".into())));
        let arr = Spi::get_one::<NameArray>("SELECT '{a,\"b c\"}'::name[]").unwrap();
        assert_eq!(arr, Some(NameArray(vec!["a".into(), "b c".into()])));
        let back =
            Spi::get_one_with_args::<String>("SELECT $1::text", &[Name("x".repeat(80)).into()])
                .unwrap()
                .unwrap();
        assert_eq!(back.len(), 63, "names are cut at NAMEDATALEN - 1");
    }
}
