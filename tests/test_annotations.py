import json
from pathlib import PureWindowsPath

import pytest

from toonvision.data.annotations import (
    Annotation,
    AnnotationError,
    Box,
    createml_entry,
    find_annotation,
    labelimg_truncated,
    read_annotation,
    read_createml,
    read_voc,
    read_yolo,
    voc_bytes,
    yolo_text,
)

# What labelImg 1.8 writes for one box: lxml pretty-printing with two spaces turned into tabs, no XML
# declaration, <path> only when it knows the image's path.
LABELIMG_XML = """<annotation>
\t<folder>screenshots</folder>
\t<filename>ttc_3.png</filename>
\t<path>C:\\Users\\someone\\toontown\\screenshots\\ttc_3.png</path>
\t<source>
\t\t<database>Unknown</database>
\t</source>
\t<size>
\t\t<width>1280</width>
\t\t<height>720</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>cog_lb_bloodsucker</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>412</xmin>
\t\t\t<ymin>133</ymin>
\t\t\t<xmax>590</xmax>
\t\t\t<ymax>702</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""


def sample_annotation() -> Annotation:
    return Annotation(
        filename="ttc_3.png",
        width=1280,
        height=720,
        folder="screenshots",
        path="C:\\Users\\someone\\toontown\\screenshots\\ttc_3.png",
        boxes=[Box("cog_lb_bloodsucker", 412, 133, 590, 702)],
    )


def test_voc_writer_matches_labelimg_bytes(tmp_path):
    assert voc_bytes(sample_annotation()).decode() == LABELIMG_XML
    path = tmp_path / "ttc_3.xml"
    path.write_text(LABELIMG_XML)
    ann = read_voc(path)
    assert voc_bytes(ann).decode() == LABELIMG_XML  # byte-for-byte round trip


def test_voc_verified_difficult_truncated_and_empty_elements(tmp_path):
    ann = Annotation(
        "a.png",
        100,
        50,
        folder="",
        path=None,
        verified=True,
        boxes=[Box("toon_cat", 1, 5, 100, 50, truncated=True, difficult=True)],
    )
    text = voc_bytes(ann).decode()
    assert text.startswith('<annotation verified="yes">\n\t<folder/>\n\t<filename>a.png</filename>\n\t<source>')
    assert "<truncated>1</truncated>" in text and "<difficult>1</difficult>" in text
    assert labelimg_truncated(ann.boxes[0], 100, 50)
    assert not labelimg_truncated(Box("toon_cat", 5, 5, 90, 40), 100, 50)
    (tmp_path / "a.xml").write_text(text)
    back = read_voc(tmp_path / "a.xml")
    assert back.verified and back.boxes == ann.boxes and back.path is None


def test_labelimg_quirks_foreign_path_jpg_float_utf8(tmp_path):
    xml = tmp_path / "écran_1.xml"
    xml.write_text(
        """<annotation>
\t<folder>Captures d'écran</folder>
\t<filename>écran_1.JPG</filename>
\t<path>/home/ünïcode/Pictures/écran_1.JPG</path>
\t<source><database>Unknown</database></source>
\t<size><width>640</width><height>480</height><depth>3</depth></size>
\t<segmented>0</segmented>
\t<object><name>toon_duck</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>10.7</xmin><ymin>20.2</ymin><xmax>200.9</xmax><ymax>400.5</ymax></bndbox></object>
</annotation>""",
        encoding="utf-8",
    )
    image = tmp_path / "écran_1.png"  # the image is a png whatever <filename> says
    image.write_bytes(b"")
    found = find_annotation(image)
    assert found is not None and found.path == xml and found.format == "voc"
    ann = read_voc(xml)
    assert ann.folder == "Captures d'écran" and ann.path.startswith("/home/ünïcode")
    assert ann.boxes[0].pixel_box() == (10, 20, 200, 400)


def test_pairing_ignores_extension_case(tmp_path):
    (tmp_path / "Shot.JPG").write_bytes(b"")
    (tmp_path / "Shot.XML").write_text("<annotation/>")
    (tmp_path / "Other.jpeg").write_bytes(b"")
    assert find_annotation(tmp_path / "Shot.JPG").path.name == "Shot.XML"
    assert find_annotation(tmp_path / "Other.jpeg") is None
    # A stray .txt is a YOLO file only with classes.txt beside it.
    (tmp_path / "Other.txt").write_text("notes")
    assert find_annotation(tmp_path / "Other.jpeg") is None
    (tmp_path / "classes.txt").write_text("toon_cat\n")
    assert find_annotation(tmp_path / "Other.jpeg").format == "yolo"


def test_round_trip_through_all_three_formats(tmp_path):
    original = Annotation(
        "dd_7.png",
        1280,
        720,
        boxes=[Box("cog_cb_moneybags", 100, 50, 300, 650), Box("toon_rabbit", 640, 100, 777, 500)],
    )
    # VOC
    (tmp_path / "dd_7.xml").write_bytes(voc_bytes(original))
    voc = read_voc(tmp_path / "dd_7.xml")
    # YOLO (labelImg writes classes.txt beside the txt, 6 decimals)
    classes: list[str] = []
    yolo_dir = tmp_path / "yolo"
    yolo_dir.mkdir()
    (yolo_dir / "dd_7.txt").write_text(yolo_text(voc, classes))
    (yolo_dir / "classes.txt").write_text("\n".join(classes) + "\n")
    yolo = read_yolo(yolo_dir / "dd_7.txt", (1280, 720))
    # CreateML
    (tmp_path / "dd_7.json").write_text(json.dumps([createml_entry(yolo)]))
    createml = read_createml(tmp_path / "dd_7.json", "dd_7.png")
    for ann in (voc, yolo, createml):
        for got, want in zip(ann.boxes, original.boxes, strict=True):
            assert got.name == want.name
            for attr in ("xmin", "ymin", "xmax", "ymax"):
                assert getattr(got, attr) == pytest.approx(getattr(want, attr), abs=0.01)
    assert yolo_text(yolo, list(classes)) == (yolo_dir / "dd_7.txt").read_text()


def test_read_annotation_dispatches_by_format(tmp_path):
    (tmp_path / "classes.txt").write_text("toon_cat\ncog_bb_flunky\n")
    (tmp_path / "s.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (tmp_path / "s.png").write_bytes(b"")
    ann = read_annotation(find_annotation(tmp_path / "s.png"), "s.png", (400, 200))
    assert ann.filename == "s.png"
    assert ann.boxes == [Box("cog_bb_flunky", 150, 50, 250, 150)]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("<annotation><object><name>toon_cat</name>", "malformed XML"),
        ("<notvoc/>", "not a Pascal VOC file"),
        ("<annotation><object><name>toon_cat</name></object></annotation>", "has no <bndbox>"),
        (
            "<annotation><object><name>toon_cat</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax>"
            "<ymax>3</ymax></bndbox></object></annotation>",
            "<xmin> is not a number",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            "<annotation><folder>&lol2;</folder></annotation>",
            "refused unsafe XML",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            "<annotation><folder>&xxe;</folder></annotation>",
            "refused unsafe XML",
        ),
    ],
)
def test_bad_voc_files_raise_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(AnnotationError) as info:
        read_voc(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_bad_yolo_and_createml(tmp_path):
    (tmp_path / "classes.txt").write_text("toon_cat\n")
    (tmp_path / "a.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationError, match="class index 3"):
        read_yolo(tmp_path / "a.txt", (10, 10))
    (tmp_path / "b.json").write_text('{"not": "a list"}')
    with pytest.raises(AnnotationError, match="not CreateML"):
        read_createml(tmp_path / "b.json", "b.png")
    (tmp_path / "c.json").write_text("[{")
    with pytest.raises(AnnotationError, match=r"c\.json"):
        read_createml(tmp_path / "c.json", "c.png")


def test_yolo_without_classes_file(tmp_path):
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationError, match=r"classes\.txt"):
        read_yolo(tmp_path / "a.txt", (10, 10))


def test_spec_example_path_is_never_used_to_find_the_image(tmp_path):
    # <path> points at another machine: pairing must not depend on it.
    xml = tmp_path / "x.xml"
    xml.write_bytes(voc_bytes(sample_annotation()))
    assert PureWindowsPath(read_voc(xml).path).name == "ttc_3.png"
    assert find_annotation(tmp_path / "x.png").path == xml
