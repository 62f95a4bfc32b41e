-- The signup demo's database: what the replay's template database is built from.
CREATE TABLE accounts (
    id         text PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    plan       text NOT NULL,
    customer   text NOT NULL,
    status     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
