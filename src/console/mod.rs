//! Staff console (a page at `/`) and the admin API under `/api`.
