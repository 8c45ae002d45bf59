"""Match: address normalisation, comparators, linking two CSV files, explanations, golden
records and the review queue."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import civicbus

PEOPLE = [
    ("Tremblay", "Marie", "1980-03-14", "H3L 1T8"), ("Gagnon", "Jean", "1975-07-02", "G1R 4P5"),
    ("Roy", "Sophie", "1990-11-23", "J4K 2B6"), ("Côté", "Luc", "1968-01-30", "H2X 1Y4"),
    ("Bouchard", "Julie", "1985-05-05", "G2J 1A1"), ("Gauthier", "Marc", "1972-09-18", "J7Y 3S5"),
    ("Morin", "Isabelle", "1995-02-11", "H4N 2R2"), ("Lavoie", "Pierre", "1960-12-01", "G6V 6Z3"),
    ("Fortin", "Nathalie", "1983-08-27", "J1H 5N4"), ("Gagné", "Alain", "1978-04-09", "H1V 3R2"),
    ("Ouellet", "Chantal", "1966-06-16", "G5L 8T7"), ("Pelletier", "Eric", "1991-10-03", "J2S 7B3"),
    ("Bélanger", "Lucie", "1970-03-22", "H9R 4X2"), ("Lévesque", "Michel", "1955-07-29", "G7H 5B1"),
    ("Bergeron", "Karine", "1988-01-15", "J6E 4L2"), ("Leblanc", "Daniel", "1979-11-08", "H7N 2K5"),
    ("Paquette", "Sylvie", "1962-05-19", "J3Y 8Y9"), ("Girard", "Patrick", "1993-09-25", "G8T 3B4"),
    ("Simard", "Caroline", "1974-02-06", "H2J 3K9"), ("Boucher", "Stéphane", "1986-12-12", "J9X 2E8"),
]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def two_files(tmp_path: Path) -> tuple[Path, Path]:
    tax = [{"id": f"T{i}", "surname": s, "given_name": g, "dob": d, "postal_code": p}
           for i, (s, g, d, p) in enumerate(PEOPLE)]
    # The assessment roll has the same people with typos, other spellings and formats, in
    # another order, and two people the tax file does not have.
    typos = {0: ("Tremblai", "Marie"), 3: ("Cote", "Luc"), 7: ("Lavoie", "Piere"),
             12: ("Belanger", "Lucie"), 16: ("Paquet", "Sylvie")}
    roll = []
    for i, (s, g, d, p) in reversed(list(enumerate(PEOPLE))):
        s, g = typos.get(i, (s, g))
        roll.append({"id": f"R{i}", "surname": s.upper(), "given_name": g,
                     "dob": d.replace("-", ""), "postal_code": p.replace(" ", "").lower()})
    roll.append({"id": "R100", "surname": "Nguyen", "given_name": "Anh", "dob": "1999-01-01",
                 "postal_code": "H3L 1T8"})
    roll.append({"id": "R101", "surname": "Smith", "given_name": "John", "dob": "1950-06-06",
                 "postal_code": "G1R 4P5"})
    write_csv(tmp_path / "tax.csv", tax)
    write_csv(tmp_path / "roll.csv", roll)
    return tmp_path / "tax.csv", tmp_path / "roll.csv"


SETTINGS: dict[str, Any] = {
    "link_type": "link",
    "unique_id": "id",
    "comparisons": [
        {"field": "surname", "kind": "name"},
        {"field": "given_name", "kind": "name"},
        {"field": "dob", "kind": "date"},
        {"field": "postal_code", "kind": "postal_code"},
    ],
    "blocking": [["postal_code"], ["soundex(surname)"], ["year(dob)"]],
    "thresholds": {"match": 0.9, "review": 0.5},
}


def test_address_normalisation() -> None:
    a = civicbus.normalize_address("2701 23rd Avenue SW Unit 104, Regina, Sask. s4s1e5")
    assert a.one_line() == "104-2701 23RD AVE SW REGINA SK  S4S 1E5"
    assert (a.unit, a.civic_number, a.street_type, a.province) == ("104", "2701", "AVE", "SK")
    assert a.language == "en" and "postal code 's4s1e5' formatted as 'S4S 1E5'" in a.corrections
    normalizer = civicbus.AddressNormalizer(record_corrections=False)
    b = normalizer.normalize_parts("1234 boul Robert Bourassa bureau 500", "Montréal", "Québec",
                                   "h3b 3a7")
    assert str(b) == "500-1234 BOUL ROBERT BOURASSA MONTRÉAL QC  H3B 3A7"
    assert b.language == "fr" and b.corrections == []
    with pytest.raises(civicbus.InvalidArgument) as caught:
        civicbus.normalize_address("1 Main St, Town D1A 1A1")
    assert caught.value.message == ("postal code 'D1A 1A1' uses letter D, which Canada Post "
                                    "never uses")


def test_comparators() -> None:
    assert civicbus.fold("  Marie-Ève  O'Neil ") == "MARIE EVE ONEIL"
    assert civicbus.soundex("ROBERT") == "R163"
    assert civicbus.nysiis("KNIGHT") == "NAGT"
    assert civicbus.double_metaphone("SMITH") == ("SM0", "XMT")
    assert civicbus.levenshtein("kitten", "sitting") == 3
    assert civicbus.levenshtein_within("kitten", "sitting", 1) == 2
    assert civicbus.damerau_levenshtein("CA", "ABC") == 2
    assert civicbus.jaro_winkler("MARTHA", "MARHTA") == pytest.approx(0.9611, abs=1e-4)
    assert civicbus.token_set_similarity("MAIN ST", "ST MAIN") == 1.0
    assert civicbus.name_key("Smith, John") == "JOHN SMITH"
    assert civicbus.parse_number("1,234.50") == 1234.5 and civicbus.parse_number("x") is None
    assert civicbus.date_distance_days("2026-01-01", "20260111") == 10


def test_link_two_csv_files(tmp_path: Path) -> None:
    tax_path, roll_path = two_files(tmp_path)
    tax = civicbus.Dataset.read_csv(str(tax_path), source="tax")
    roll = civicbus.Dataset.read_csv(str(roll_path), source="roll")
    assert len(tax) == 20 and len(roll) == 22 and tax.columns[0] == "id"
    assert roll.value(0, "surname") == "BOUCHER"
    engine = civicbus.MatchEngine(civicbus.MatchSettings(SETTINGS))
    assert engine.settings.link_type == "link" and not engine.trained
    result = engine.run(tax, roll)
    assert engine.trained
    matched = {(engine.record_id(tax, p.left), engine.record_id(roll, p.right))
               for p in result.pairs if p.decision == "match"}
    expected = {(f"T{i}", f"R{i}") for i in range(len(PEOPLE))}
    assert matched == expected
    assert result.matches == len(expected)
    assert result.candidate_pairs >= len(expected)
    assert {r.rule for r in result.rules} >= {"postal_code"}
    # Explained field by field.
    pair = next(p for p in result.pairs if engine.record_id(roll, p.right) == "R0")
    [why] = engine.explain(tax, roll, [(pair.left, pair.right)])
    assert (why.left_id, why.right_id) == ("T0", "R0")
    assert [f.comparison for f in why.fields] == ["surname", "given_name", "dob", "postal_code"]
    assert why.fields[1].level == "exact"
    assert "surname" in why.to_text() and why.to_dict()["left_id"] == "T0"
    # The model round-trips.
    again = civicbus.MatchEngine(SETTINGS)
    again.load_model(engine.model())
    assert again.trained and again.prior == pytest.approx(engine.prior)
    assert [c.name for c in again.parameters()] == ["surname", "given_name", "dob",
                                                     "postal_code"]


def test_settings_errors_name_the_problem() -> None:
    with pytest.raises(civicbus.InvalidArgument):
        civicbus.MatchSettings({"link_type": "merge"})
    s = civicbus.MatchSettings.from_json('{"comparisons": [{"field": "name", "kind": "name"}],'
                                         ' "blocking": [["name"]]}')
    assert s.fields() == ["name"] and s.link_type == "dedupe"


def test_dataset_from_records_and_incremental_index() -> None:
    rows = [{"id": str(i), "surname": s, "given_name": g, "dob": d, "postal_code": p}
            for i, (s, g, d, p) in enumerate(PEOPLE)]
    data = civicbus.Dataset.from_records(rows + [dict(rows[3], id="99")])
    settings = dict(SETTINGS, link_type="dedupe")
    engine = civicbus.MatchEngine(settings)
    result = engine.run(data)
    assert result.matches == 1 and result.clusters == len(PEOPLE)
    index = civicbus.MatchIndex(engine, data.columns)
    for row in rows:
        assert index.add(list(row.values())) is None
    hit = index.add(["99", "Côté", "Luc", "1968-01-30", "H2X 1Y4"])
    assert hit is not None and hit.row == 3 and hit.decision == "match"
    assert len(index) == len(rows) + 1


def test_golden_records_with_python_survivorship(tmp_path: Path) -> None:
    def longest(attribute: str, candidates: list[civicbus.SurvivorCandidate]) -> int | None:
        lengths = [len(str(c.value)) for c in candidates]
        return lengths.index(max(lengths)) if candidates else None

    options = {"kind": "property", "default": "most_recent",
               "attributes": {"assessed_value": {"rule": "source_priority",
                                                 "sources": ["mpac"]},
                              "legal_description": {"rule": "custom", "function": "longest"}}}
    store = civicbus.GoldenRecordStore(options, path=str(tmp_path / "golden.db"),
                                       functions={"longest": longest})
    jan = datetime(2026, 1, 1, tzinfo=timezone.utc)
    jun = datetime(2026, 6, 1, tzinfo=timezone.utc)
    change = store.apply("P-1", [
        civicbus.SourceRecord("mpac", "0101", {"assessed_value": 412000, "owner": "A. Roy",
                                               "legal_description": "LOT 5"}, updated_at=jan),
        {"source": "tax", "record_id": "T-9", "updated_at": jun,
         "fields": {"assessed_value": 399000, "owner": "Anne Roy",
                    "legal_description": "LOT 5 CONC 2 PLAN 4M-1"}},
    ])
    assert change.created and change.version == 1
    assert {c.attribute for c in change.changed} == {"assessed_value", "owner",
                                                     "legal_description"}
    record = store.get("P-1")
    assert record.values() == {"assessed_value": 412000, "legal_description":
                               "LOT 5 CONC 2 PLAN 4M-1", "owner": "Anne Roy"}
    assert record.attributes["assessed_value"].source == "mpac"
    assert record.attributes["owner"].updated_at == jun
    assert record.members == [("mpac", "0101"), ("tax", "T-9")]
    assert store.entity_of("tax", "T-9") == "P-1" and store.entity_of("tax", "x") is None
    assert [r.entity_id for r in store.list()] == ["P-1"]
    with pytest.raises(civicbus.NotFound):
        store.get("P-2")
    store.close()


def test_review_queue_labels(tmp_path: Path) -> None:
    queue = civicbus.ReviewQueue(path=str(tmp_path / "review.db"))
    report = queue.enqueue([civicbus.ReviewItem("T1", "R1", 0.7, match_weight=1.5),
                            civicbus.ReviewItem("T2", "R7", 0.6)])
    assert report.added == 2
    first = queue.pending()[0]
    assert (first.left_id, first.status) == ("T1", "pending")
    decided = queue.decide(first.id, True, "clerk@city", "same roll number")
    assert decided.status == "accepted" and decided.decided_at is not None
    with pytest.raises(civicbus.FailedPrecondition):
        queue.decide(first.id, False, "clerk@city")
    [label] = queue.labelled()
    assert (label.left_id, label.right_id, label.match) == ("T1", "R1", True)
    counts = queue.counts()
    assert (counts.pending, counts.accepted, counts.rejected) == (1, 1, 0)
    with pytest.raises(civicbus.InvalidArgument):
        civicbus.ReviewQueue()
