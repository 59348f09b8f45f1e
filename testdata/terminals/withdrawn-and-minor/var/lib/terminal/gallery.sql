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

INSERT INTO subjects VALUES ('s-0001', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-01-12T09:00:00+08:00', '2026-11-24T08:00:00+08:00');
INSERT INTO subjects VALUES ('s-0002', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-01-12T09:30:00+08:00', '2026-11-24T07:10:00+08:00');
INSERT INTO subjects VALUES ('s-0003', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-02-20T18:00:00+08:00', '2026-11-23T21:40:00+08:00');
INSERT INTO subjects VALUES ('s-0004', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-03-01T10:00:00+08:00', '2026-11-19T18:30:00+08:00');
INSERT INTO subjects VALUES ('s-0005', x'74656d706c6174652d706c616365686f6c646572', 'under_14', 'device', '2026-09-01T16:30:00+08:00', '2026-11-24T07:35:00+08:00');
INSERT INTO subjects VALUES ('s-0006', x'74656d706c6174652d706c616365686f6c646572', 'under_14', 'device', '2026-09-02T17:00:00+08:00', '2026-11-24T07:36:00+08:00');
INSERT INTO subjects VALUES ('s-0007', x'74656d706c6174652d706c616365686f6c646572', 'adult', 'device', '2026-01-15T08:00:00+08:00', '2026-11-24T08:20:00+08:00');
INSERT INTO consents VALUES (1, 's-0001', 'separate', NULL, '2026-01-12T08:59:00+08:00', NULL);
INSERT INTO consents VALUES (2, 's-0002', 'separate', NULL, '2026-01-12T09:29:00+08:00', NULL);
INSERT INTO consents VALUES (3, 's-0003', 'separate', NULL, '2026-02-20T17:59:00+08:00', NULL);
INSERT INTO consents VALUES (4, 's-0004', 'separate', NULL, '2026-03-01T09:59:00+08:00', NULL);
INSERT INTO consents VALUES (5, 's-0004', 'separate', NULL, '2026-06-01T12:00:00+08:00', '2026-11-20T08:00:00+08:00');
INSERT INTO consents VALUES (6, 's-0005', 'separate', NULL, '2026-09-01T16:29:00+08:00', NULL);
INSERT INTO consents VALUES (7, 's-0006', 'guardian', 'g-0001', '2026-09-02T16:59:00+08:00', NULL);
INSERT INTO consents VALUES (8, 's-0007', 'separate', NULL, '2026-01-15T07:59:00+08:00', '2026-04-02T10:00:00+08:00');
INSERT INTO consents VALUES (9, 's-0007', 'separate', NULL, '2026-04-10T09:00:00+08:00', NULL);
