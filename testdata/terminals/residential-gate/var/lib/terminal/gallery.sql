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

INSERT INTO subjects VALUES ('s-0001', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-02-03T09:12:00+08:00', '2026-11-24T08:01:10+08:00');
INSERT INTO subjects VALUES ('s-0002', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-02-03T09:20:41+08:00', '2026-11-23T19:44:02+08:00');
INSERT INTO subjects VALUES ('s-0003', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-03-15T17:05:00+08:00', '2026-11-24T07:30:55+08:00');
INSERT INTO subjects VALUES ('s-0004', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-06-30T10:00:00+08:00', NULL);
INSERT INTO subjects VALUES ('s-0005', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-09-12T18:22:13+08:00', '2026-11-20T12:00:00+08:00');
INSERT INTO consents VALUES (1, 's-0001', 'separate', NULL, '2026-02-03T09:11:30+08:00', NULL);
INSERT INTO consents VALUES (2, 's-0002', 'separate', NULL, '2026-02-03T09:20:00+08:00', NULL);
INSERT INTO consents VALUES (3, 's-0003', 'separate', NULL, '2026-03-15T17:04:12+08:00', NULL);
INSERT INTO consents VALUES (4, 's-0004', 'separate', NULL, '2026-06-30T09:59:00+08:00', NULL);
INSERT INTO consents VALUES (5, 's-0005', 'separate', NULL, '2026-09-12T18:21:40+08:00', NULL);
