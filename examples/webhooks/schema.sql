-- The webhooks demo's database: orders awaiting payment, the payment provider's events the
-- service has processed (one row per event id), and the payments booked against orders.
CREATE TABLE orders (
    id      text PRIMARY KEY,
    amount  integer NOT NULL,          -- cents
    status  text NOT NULL              -- pending | paid
);

CREATE TABLE webhook_events (
    event_id  text PRIMARY KEY,        -- the provider's event id
    type      text NOT NULL,
    order_id  text NOT NULL REFERENCES orders (id)
);

CREATE TABLE payments (
    id        bigserial PRIMARY KEY,
    order_id  text NOT NULL REFERENCES orders (id),
    amount    integer NOT NULL,
    event_id  text NOT NULL
);
