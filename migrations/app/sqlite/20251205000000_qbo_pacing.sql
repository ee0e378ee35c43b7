-- Intuit allows each realm 10 requests a second and 500 a minute per app, whatever worker sends
-- them: the time the realm's next request may be sent, reserved by every sender in a write
-- transaction on this row (a cell-rate pacer shared by all workers and machines).
ALTER TABLE qbo_realms ADD COLUMN next_request_at TEXT;
