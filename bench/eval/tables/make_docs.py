"""Writes the tables of our own in docs/ (the shared ones are copied; see LICENSE.md).

    .venv/bin/python bench/eval/tables/make_docs.py

Each is a small table of the kind people ask about: an inventory CSV, a Chinese travel
policy workbook with two sheets, a directory in a Word document, a long server list
in Markdown (cut into several chunks), a Chinese price list CSV, and a PDF rate table
(the Word document's twin, converted by LibreOffice when `soffice` is present).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent / "docs"

INVENTORY = [
    ("Warehouse", "SKU", "Item", "Quantity", "Unit price (USD)"),
    ("North", "SKU-1042", "Safety goggles", "340", "4.80"),
    ("North", "SKU-1107", "Nitrile gloves (box of 100)", "1200", "9.50"),
    ("South", "SKU-2210", "Hard hat", "85", "18.00"),
    ("South", "SKU-2315", "Ear defenders", "60", "22.40"),
    ("East", "SKU-3120", "High-visibility vest", "410", "6.25"),
    ("East", "SKU-3301", "Steel-toe boots", "72", "64.00"),
    ("West", "SKU-4018", "First aid kit", "38", "31.90"),
    ("West", "SKU-4460", "Fire extinguisher", "25", "54.00"),
    ("Central", "SKU-5002", "Dust mask", "2600", "0.75"),
    ("Central", "SKU-5123", "Knee pads", "140", "15.60"),
    ("Harbor", "SKU-6011", "Life jacket", "48", "42.00"),
    ("Harbor", "SKU-6077", "Welding helmet", "19", "88.50"),
]

SERVERS = [
    ("Hostname", "IP address", "Role", "Operating system", "Rack", "Owner"),
    *[
        (
            f"srv-{n:02d}",
            f"10.20.{n // 10}.{n * 7 % 250 + 2}",
            role,
            system,
            f"R{n % 6 + 1}",
            owner,
        )
        for n, (role, system, owner) in enumerate(
            [
                ("web frontend", "Debian 12", "Platform team"),
                ("web frontend", "Debian 12", "Platform team"),
                ("PostgreSQL primary", "Ubuntu 22.04", "Data team"),
                ("PostgreSQL replica", "Ubuntu 22.04", "Data team"),
                ("Redis cache", "Debian 12", "Platform team"),
                ("mail relay", "Rocky Linux 9", "IT operations"),
                ("build runner", "Ubuntu 24.04", "Developer tools"),
                ("build runner", "Ubuntu 24.04", "Developer tools"),
                ("backup target", "FreeBSD 14", "IT operations"),
                ("LDAP directory", "Rocky Linux 9", "Security team"),
                ("Prometheus monitoring", "Debian 12", "SRE team"),
                ("Grafana dashboards", "Debian 12", "SRE team"),
                ("Kafka broker", "Ubuntu 22.04", "Data team"),
                ("Kafka broker", "Ubuntu 22.04", "Data team"),
                ("object storage", "Debian 12", "Storage team"),
                ("VPN gateway", "OpenBSD 7.5", "Security team"),
                ("print server", "Windows Server 2022", "IT operations"),
                ("Elasticsearch node", "Ubuntu 22.04", "Search team"),
                ("GPU training node", "Ubuntu 24.04", "ML team"),
                ("DNS resolver", "Debian 12", "Platform team"),
                ("payroll application", "Windows Server 2019", "Finance IT"),
                ("HR portal", "Rocky Linux 9", "People systems"),
                ("CI artifact cache", "Debian 12", "Developer tools"),
                ("log archive", "FreeBSD 14", "SRE team"),
            ],
            start=1,
        )
    ],
]

PRICES_ZH = [
    ("产品编号", "产品名称", "规格", "单价（元）", "库存（件）", "产地"),
    ("P-101", "龙井绿茶", "250克/罐", "168", "320", "杭州"),
    ("P-102", "普洱熟茶", "357克/饼", "236", "150", "西双版纳"),
    ("P-103", "铁观音", "500克/袋", "198", "410", "安溪"),
    ("P-104", "碧螺春", "200克/罐", "145", "95", "苏州"),
    ("P-105", "祁门红茶", "250克/盒", "132", "260", "祁门"),
    ("P-106", "白毫银针", "100克/盒", "288", "60", "福鼎"),
    ("P-107", "黄山毛峰", "250克/罐", "118", "180", "黄山"),
    ("P-108", "大红袍", "300克/盒", "356", "75", "武夷山"),
    ("P-109", "茉莉花茶", "500克/袋", "86", "540", "福州"),
    ("P-110", "六安瓜片", "250克/罐", "152", "130", "六安"),
    ("P-111", "紫砂茶壶", "300毫升", "420", "35", "宜兴"),
    ("P-112", "青瓷茶杯", "6只/套", "98", "220", "龙泉"),
]

LODGING_ZH = [
    ("城市", "城市类别", "住宿费上限（元/晚）", "伙食补助（元/天）", "市内交通（元/天）"),
    ("北京", "一类", "800", "120", "80"),
    ("上海", "一类", "750", "120", "80"),
    ("深圳", "一类", "700", "110", "80"),
    ("广州", "二类", "650", "110", "70"),
    ("杭州", "二类", "600", "100", "70"),
    ("南京", "二类", "560", "100", "60"),
    ("成都", "二类", "520", "100", "60"),
    ("武汉", "三类", "480", "90", "50"),
    ("西安", "三类", "450", "90", "50"),
    ("昆明", "三类", "420", "80", "50"),
]

TRAVEL_CLASS_ZH = [
    ("职级", "飞机舱位", "火车席别", "轮船舱位"),
    ("总监及以上", "公务舱", "一等座", "一等舱"),
    ("经理", "经济舱", "一等座", "二等舱"),
    ("主管", "经济舱", "二等座", "二等舱"),
    ("普通员工", "经济舱", "二等座", "三等舱"),
]

DIRECTORY = [
    ("Department", "Manager", "Extension", "Room", "Opening hours"),
    ("Accounts payable", "Priya Natarajan", "4417", "B-214", "09:00-16:00"),
    ("Facilities", "Tomasz Wójcik", "4102", "A-011", "07:30-17:00"),
    ("Legal", "Helena Marsh", "4550", "C-305", "09:00-17:30"),
    ("Payroll", "Kwame Mensah", "4421", "B-216", "10:00-15:00"),
    ("IT help desk", "Sofia Alvarez", "4000", "A-120", "08:00-18:00"),
    ("Recruiting", "Daniel Okafor", "4630", "C-118", "09:00-17:00"),
    ("Mail room", "Ines Duarte", "4015", "A-002", "08:00-12:00"),
]

SHIPPING = [
    ("Destination zone", "Carrier", "Delivery time", "Rate per kg (EUR)", "Minimum charge (EUR)"),
    ("Zone A (domestic)", "PostNord", "1-2 days", "2.10", "6.00"),
    ("Zone B (EU neighbours)", "DHL Parcel", "2-3 days", "3.40", "9.50"),
    ("Zone C (rest of EU)", "DPD", "3-5 days", "4.75", "12.00"),
    ("Zone D (UK and Switzerland)", "UPS Standard", "4-6 days", "6.90", "18.00"),
    ("Zone E (North America)", "FedEx Economy", "6-9 days", "11.20", "35.00"),
    ("Zone F (Asia-Pacific)", "Emirates SkyCargo", "7-12 days", "13.80", "42.00"),
]


def write_csv(path: Path, rows: list[tuple[str, ...]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


def write_markdown(path: Path, title: str, intro: str, rows: list[tuple[str, ...]]) -> None:
    lines = [f"# {title}", "", intro, "", " | ".join(rows[0]), " | ".join("---" for _ in rows[0])]
    lines += [" | ".join(row) for row in rows[1:]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_workbook(path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    first = book.active
    first.title = "住宿与补助"
    for row in LODGING_ZH:
        first.append(row)
    second = book.create_sheet("交通工具等级")
    for row in TRAVEL_CLASS_ZH:
        second.append(row)
    book.save(path)


def write_docx(path: Path, title: str, intro: str, rows: list[tuple[str, ...]], note: str) -> None:
    from docx import Document

    document = Document()
    document.add_heading(title, level=1)
    document.add_paragraph(intro)
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    for cells, row in zip(table.rows, rows, strict=True):
        for cell, value in zip(cells.cells, row, strict=True):
            cell.text = value
    document.add_paragraph(note)
    document.save(path)


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    write_csv(DOCS / "inventory.csv", INVENTORY)
    write_csv(DOCS / "茶叶价格表.csv", PRICES_ZH)
    write_workbook(DOCS / "差旅标准.xlsx")
    write_markdown(
        DOCS / "server-inventory.md",
        "Server inventory",
        "Every production server, its address, role and the team that owns it.",
        SERVERS,
    )
    write_docx(
        DOCS / "office-directory.docx",
        "Office directory",
        "Who runs each department, and where to find them.",
        DIRECTORY,
        "Call the switchboard on 4999 for any department not listed.",
    )
    soffice = shutil.which("soffice")
    if soffice is None:
        print("soffice not found: shipping-rates.pdf not written")
        return
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "shipping-rates.docx"
        write_docx(
            source,
            "Shipping rates",
            "Parcel rates by destination zone, valid from 1 March.",
            SHIPPING,
            "Parcels over 30 kg are quoted separately.",
        )
        subprocess.run(  # noqa: S603
            [soffice, "--headless", "--convert-to", "pdf", "--outdir", str(DOCS), str(source)],
            check=True,
            capture_output=True,
            timeout=300,
        )


if __name__ == "__main__":
    main()
