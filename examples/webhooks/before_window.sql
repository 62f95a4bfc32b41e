-- The database as it was just before the incident window (2024-07-09 09:00 UTC): six orders,
-- one of them (ord_1000) paid at 08:58:40 by event evt_1PqA0c2eZvKYlo2C00000001, whose retried
-- delivery arrives inside the window. The recorder starts from it, and so does every replay
-- of the window (conftest.py's webhooks_db).
INSERT INTO orders (id, amount, status) VALUES
    ('ord_1000', 4200, 'paid'),
    ('ord_1001', 1999, 'pending'),
    ('ord_1002', 7500, 'pending'),
    ('ord_1003', 1250, 'pending'),
    ('ord_1004', 3300, 'pending'),
    ('ord_1005', 5900, 'pending');

INSERT INTO webhook_events (event_id, type, order_id) VALUES
    ('evt_1PqA0c2eZvKYlo2C00000001', 'payment.succeeded', 'ord_1000');

INSERT INTO payments (order_id, amount, event_id) VALUES
    ('ord_1000', 4200, 'evt_1PqA0c2eZvKYlo2C00000001');
