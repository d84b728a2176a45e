//! Watch events change the model one at a time.
