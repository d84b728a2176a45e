//! Conversions, case by case.
