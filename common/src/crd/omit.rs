//! `skip_serializing_if` predicates mirroring Go's `omitempty`, so objects we
//! write carry exactly the keys upstream's would.

/// Go omits a `false` bool tagged `omitempty`.
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

/// Go omits a zero number tagged `omitempty`.
pub(crate) fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
