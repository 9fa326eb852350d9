//! Load generator and side-by-side SFU comparisons. Not built yet: this crate only reserves its place in the workspace.
