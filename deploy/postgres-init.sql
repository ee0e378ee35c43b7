-- The app database beside the lineage store (compose.yaml). `migrate` migrates the lineage store;
-- the app database is migrated by the first process that opens it.
CREATE DATABASE robo_app OWNER robo;
