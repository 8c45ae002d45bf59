-- A stand-in for the part of a CSDC AMANDA database the `amanda` connector reads (see
-- docs/connectors.md, "AMANDA"). AMANDA itself runs on Oracle or SQL Server; a migration
-- starts from an export of these tables into SQLite or PostgreSQL, which this DDL describes.
-- Portable: it runs unchanged on SQLite and PostgreSQL. Identifiers are unquoted, so
-- PostgreSQL folds them to lower case (folderrsn) and SQLite matches them in any case, as
-- the connector's queries (also unquoted) expect. Only the columns the connector reads are
-- here; a real export has many more (FolderInfo, FolderProcess, FolderFee, ...), which the
-- connector ignores.

-- Code tables: AMANDA keeps every code list in a Valid* table keyed by its code.
CREATE TABLE ValidStatus (
  StatusCode INTEGER PRIMARY KEY,
  StatusDesc VARCHAR(60) NOT NULL
);

CREATE TABLE ValidPeople (
  PeopleCode INTEGER PRIMARY KEY,
  PeopleDesc VARCHAR(60) NOT NULL  -- the role of a person on a folder: Applicant, Owner, Contractor
);

CREATE TABLE ValidSub (
  SubCode INTEGER PRIMARY KEY,
  SubDesc VARCHAR(60) NOT NULL
);

-- A parcel or address. RSN = "record sequence number", AMANDA's surrogate keys.
CREATE TABLE Property (
  PropertyRSN INTEGER PRIMARY KEY,
  PropHouse VARCHAR(20),
  PropStreet VARCHAR(60),
  PropStreetType VARCHAR(20),
  PropStreetDirection VARCHAR(10),
  PropUnit VARCHAR(20),
  PropCity VARCHAR(40),
  PropProvince VARCHAR(20),
  PropPostal VARCHAR(12),
  PropertyRoll VARCHAR(30),          -- assessment roll number
  StampDate TIMESTAMP,               -- last change (AMANDA stamps every row it writes)
  StampUser VARCHAR(30)
);

-- A folder is one case: a permit, a licence, an inspection file.
CREATE TABLE Folder (
  FolderRSN INTEGER PRIMARY KEY,
  FolderYear VARCHAR(4),
  FolderSequence VARCHAR(10),
  FolderSection VARCHAR(10),
  FolderRevision VARCHAR(10),
  CustomFolderNumber VARCHAR(40),    -- the number people quote ("24-101234-BP")
  FolderType VARCHAR(4) NOT NULL,    -- "BP" building permit, "DM" demolition, ...
  SubCode INTEGER,
  WorkCode INTEGER,
  StatusCode INTEGER,
  PropertyRSN INTEGER,
  FolderName VARCHAR(120),
  FolderDescription VARCHAR(2000),
  InDate TIMESTAMP,                  -- application received
  IssueDate TIMESTAMP,               -- permit issued
  ExpiryDate TIMESTAMP,
  FinalDate TIMESTAMP,               -- closed (final inspection passed)
  StampDate TIMESTAMP,
  StampUser VARCHAR(30)
);

CREATE TABLE People (
  PeopleRSN INTEGER PRIMARY KEY,
  NameTitle VARCHAR(10),
  NameFirst VARCHAR(60),
  NameLast VARCHAR(60),
  OrganizationName VARCHAR(120),
  AddressLine1 VARCHAR(120),
  AddrCity VARCHAR(40),
  AddrPostal VARCHAR(12),
  Phone1 VARCHAR(30),
  EmailAddress VARCHAR(120),
  StampDate TIMESTAMP,
  StampUser VARCHAR(30)
);

-- Who is on a folder in which role (one person may hold several roles on one folder).
CREATE TABLE FolderPeople (
  FolderRSN INTEGER NOT NULL,
  PeopleRSN INTEGER NOT NULL,
  PeopleCode INTEGER NOT NULL,
  StampDate TIMESTAMP,
  StampUser VARCHAR(30),
  PRIMARY KEY (FolderRSN, PeopleRSN, PeopleCode)
);
