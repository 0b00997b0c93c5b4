"""Test files made from our own text: OFD documents, PDFs, DOCX files and archives."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

_OFD_NS = "http://www.ofdspec.org/2016"


def ofd_bytes(pages: list[str | bytes], title: str = "") -> bytes:
    """An OFD document (GB/T 33190) with a page per item: a string is a page of text,
    bytes are a PNG or JPEG drawn over the whole page (a scanned page)."""
    ns = f'xmlns:ofd="{_OFD_NS}"'
    media = [
        f'<ofd:MultiMedia ID="{100 + i}" Type="Image" Format="PNG">'
        f"<ofd:MediaFile>image_{i}.png</ofd:MediaFile></ofd:MultiMedia>"
        for i, page in enumerate(pages)
        if isinstance(page, bytes)
    ]
    parts: dict[str, str | bytes] = {
        "OFD.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><ofd:OFD {ns} Version="1.1" DocType="OFD">'
            f"<ofd:DocBody><ofd:DocInfo><ofd:DocID>lore-test</ofd:DocID>"
            f"<ofd:Title>{title}</ofd:Title></ofd:DocInfo>"
            "<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>"
        ),
        "Doc_0/Document.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><ofd:Document {ns}><ofd:CommonData>'
            "<ofd:MaxUnitID>1000</ofd:MaxUnitID><ofd:PageArea>"
            "<ofd:PhysicalBox>0 0 210 297</ofd:PhysicalBox></ofd:PageArea>"
            "<ofd:DocumentRes>DocumentRes.xml</ofd:DocumentRes></ofd:CommonData><ofd:Pages>"
            + "".join(
                f'<ofd:Page ID="{i + 1}" BaseLoc="Pages/Page_{i}/Content.xml"/>'
                for i in range(len(pages))
            )
            + "</ofd:Pages></ofd:Document>"
        ),
        "Doc_0/DocumentRes.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><ofd:Res {ns} BaseLoc="Res">'
            f"<ofd:MultiMedias>{''.join(media)}</ofd:MultiMedias></ofd:Res>"
        ),
    }
    for i, page in enumerate(pages):
        if isinstance(page, bytes):
            parts[f"Doc_0/Res/image_{i}.png"] = page
            body = (
                f'<ofd:ImageObject ID="{200 + i}" ResourceID="{100 + i}" '
                'Boundary="0 0 210 297" CTM="210 0 0 297 0 0"/>'
            )
        else:
            body = "".join(
                f'<ofd:TextObject ID="{300 + 10 * i + n}" Boundary="20 {20 + 8 * n} 170 8" '
                f'Font="1" Size="4"><ofd:TextCode X="0" Y="4">{line}</ofd:TextCode>'
                "</ofd:TextObject>"
                for n, line in enumerate(page.splitlines())
            )
        parts[f"Doc_0/Pages/Page_{i}/Content.xml"] = (
            f'<?xml version="1.0" encoding="UTF-8"?><ofd:Page {ns}><ofd:Content>'
            f'<ofd:Layer ID="{400 + i}">{body}</ofd:Layer></ofd:Content></ofd:Page>'
        )
    return zip_bytes(parts)


def text_image(text: str) -> bytes:
    """A white PNG with `text` in large black letters, for OCR to read."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1400, 400), "white")
    font = ImageFont.load_default(size=64)
    ImageDraw.Draw(image).text((40, 150), text, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def zip_bytes(parts: dict[str, str | bytes]) -> bytes:
    """A zip archive holding `parts` (name -> text or bytes), deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return out.getvalue()


def docx_bytes(paragraphs: list[str]) -> bytes:
    """A DOCX file with these paragraphs."""
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pdf_bytes(text: str) -> bytes:
    """A one-page PDF whose text layer holds `text` (ASCII)."""
    return pdf_pages([text])


def pdf_pages(pages: list[str]) -> bytes:
    """A PDF of one page per item of `pages`, each page's text layer holding its item
    (ASCII; one line a page)."""
    count = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count)).encode()
    font = 3 + 2 * count
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
    ]
    for index, text in enumerate(pages):
        stream = f"BT /F1 14 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * index, font)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    table = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, table)
    )
    return out.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    """Write `data` at `path` (making its folder), and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path
