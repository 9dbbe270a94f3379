//! hba
