-- Generated into gallery.db by `go test ./device/fsterm -run TestFixtureGalleries -update`.
-- Subject refs are pseudonymous and templates are placeholder bytes, never a real face template.
CREATE TABLE subjects (
  subject_ref  TEXT PRIMARY KEY,
  template     BLOB,
  age_band     TEXT NOT NULL DEFAULT 'unknown',
  stored_at    TEXT NOT NULL DEFAULT 'device',
  enrolled_at  TEXT NOT NULL,
  last_used_at TEXT
);
CREATE TABLE consents (
  id           INTEGER PRIMARY KEY,
  subject_ref  TEXT NOT NULL,
  basis        TEXT NOT NULL,
  guardian_ref TEXT,
  granted_at   TEXT NOT NULL,
  withdrawn_at TEXT
);

INSERT INTO subjects VALUES ('s-0001', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-11-21T15:02:00+08:00', '2026-11-24T07:45:00+08:00');
INSERT INTO subjects VALUES ('s-0002', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-11-22T20:31:00+08:00', '2026-11-23T23:10:00+08:00');
INSERT INTO consents VALUES (1, 's-0001', 'separate', NULL, '2026-11-21T15:01:30+08:00', NULL);
INSERT INTO consents VALUES (2, 's-0002', 'separate', NULL, '2026-11-22T20:30:12+08:00', NULL);
