"""Brand images from one logo: input checks by content (PNG/SVG, size, SVG safety) and every variant; no file I/O.

Pillow does the raster work and resvg draws SVGs; an SVG is drawn only after it has passed `check_svg`.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass

import defusedxml.ElementTree as SafeET
import resvg_py
from defusedxml import DefusedXmlException
from PIL import Image, UnidentifiedImageError

MAX_INPUT_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
MIN_SIDE = 16
MAX_ASPECT = 8  # a logo wider or taller than this many times the other side is no logo (and an SVG draw bomb)
SVG_DRAW_SIDE = 1024  # an SVG is drawn with this longer side, then scaled like a PNG
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"
_FORBIDDEN_ELEMENTS = {"script", "foreignobject", "iframe", "embed", "object"}
_ANIMATIONS = {"set", "animate"}  # could set an href after the checks
_HREF_ATTRIBUTES = {"href", "{http://www.w3.org/1999/xlink}href"}
_SAFE_DATA_URI = re.compile(r"data:image/(png|jpeg|gif|webp)[;,]", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*['\"]?\s*([^)'\"\s]*)", re.IGNORECASE)
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(px)?\s*$")
_ICO_SIDES = (16, 32, 48, 64, 128, 256)


class ImageRejected(ValueError):
    """An input image refused for its content; the message names the input, never a server path."""


@dataclass(frozen=True)
class BrandSource:
    label: str  # which input: logo, favicon …
    kind: str  # png | svg
    data: bytes  # as given (an SVG is served as it is once checked)
    raster: Image.Image  # RGBA


def load_source(data: bytes, label: str) -> BrandSource:
    """Check an input image by its content and decode it; ImageRejected says what is wrong."""
    if len(data) > MAX_INPUT_BYTES:
        raise ImageRejected(f"{label} is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    if data.startswith(PNG_MAGIC):
        return BrandSource(label, "png", data, _decode_png(data, label))
    if _looks_like_svg(data):
        check_svg(data, label)
        return BrandSource(label, "svg", data, _draw_svg(data, label))
    raise ImageRejected(f"{label} is neither a PNG nor an SVG image (by its content, whatever its name)")


def _decode_png(data: bytes, label: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            _check_dimensions(image.size, label)
            image.load()
            return image.convert("RGBA")
    except Image.DecompressionBombError:
        raise ImageRejected(f"{label} has more than {MAX_PIXELS} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageRejected(f"{label} is a damaged PNG ({error})") from None


def _check_dimensions(size: tuple[int, int], label: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageRejected(f"{label} is {width}x{height}: more than {MAX_PIXELS} pixels")
    if min(width, height) < MIN_SIDE:
        raise ImageRejected(f"{label} is {width}x{height}: each side must be at least {MIN_SIDE} pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageRejected(f"{label} is {width}x{height}: too far from square for a logo")


def _looks_like_svg(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<svg", b"<!--", b"<!doctype svg"))


def check_svg(data: bytes, label: str) -> None:
    """Refuse an SVG with scripts, event handlers, external references, foreign content or a DTD/entities."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise ImageRejected(f"{label}: SVG with a DOCTYPE or entities is not accepted") from None
    except SafeET.ParseError as error:
        raise ImageRejected(f"{label} is not well-formed SVG ({error})") from None
    if root.tag != f"{SVG_NS}svg":
        raise ImageRejected(f"{label}: the root element is not an SVG <svg> element")
    for element in root.iter():
        tag = _local(element.tag).lower()
        if tag in _FORBIDDEN_ELEMENTS:
            raise ImageRejected(f"{label}: SVG with <{_local(element.tag)}> is not accepted")
        for name, value in element.attrib.items():
            if _local(name).lower().startswith("on"):
                raise ImageRejected(f"{label}: SVG with an event handler ({_local(name)}=) is not accepted")
            if name in _HREF_ATTRIBUTES and not _internal_reference(value):
                raise ImageRejected(f"{label}: SVG with an external reference ({_local(name)}=) is not accepted")
            if name == "style":
                _check_css(value, label)
        if tag in _ANIMATIONS and element.get("attributeName", "").rpartition(":")[2].lower() == "href":
            raise ImageRejected(f"{label}: SVG animating a link (<{tag} attributeName=href>) is not accepted")
        if tag == "style":
            _check_css(element.text or "", label)


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _internal_reference(value: str) -> bool:
    value = value.strip()
    return value.startswith("#") or _SAFE_DATA_URI.match(value) is not None


def _check_css(css: str, label: str) -> None:
    # A backslash could spell url( or @import as CSS escapes the checks below would not see.
    if "\\" in css or "@import" in css.lower() or any(not _internal_reference(url) for url in _CSS_URL.findall(css)):
        raise ImageRejected(f"{label}: SVG with an external reference in CSS is not accepted")


def _svg_aspect(data: bytes) -> float:
    """Width divided by height, from width/height or the viewBox (1 when neither says)."""
    root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    width, height = (_LENGTH.match(root.get(side, "")) for side in ("width", "height"))
    if width and height:
        sides = float(width.group(1)), float(height.group(1))
    else:
        box = re.split(r"[\s,]+", root.get("viewBox", "").strip())
        sides = (float(box[2]), float(box[3])) if len(box) == 4 else (1.0, 1.0)
    if min(sides) <= 0:
        raise ImageRejected("SVG with an empty width or height")
    return sides[0] / sides[1]


def _draw_svg(data: bytes, label: str) -> Image.Image:
    try:
        aspect = _svg_aspect(data)
    except ValueError as error:
        raise ImageRejected(f"{label}: {error}") from None
    if not 1 / MAX_ASPECT <= aspect <= MAX_ASPECT:
        raise ImageRejected(f"{label}: the SVG is too far from square for a logo")
    side = {"width": SVG_DRAW_SIDE} if aspect >= 1 else {"height": SVG_DRAW_SIDE}
    try:
        png = resvg_py.svg_to_bytes(svg_string=data.decode("utf-8-sig"), **side)
    except (ValueError, UnicodeDecodeError) as error:
        raise ImageRejected(f"{label}: the SVG cannot be drawn ({error})") from None
    with Image.open(io.BytesIO(bytes(png)), formats=["PNG"]) as image:
        return image.convert("RGBA")


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` scaled to fit `size`, centred on a transparent canvas of exactly that size."""
    scale = min(size[0] / image.width, size[1] / image.height)
    scaled = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                          Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(scaled, ((size[0] - scaled.width) // 2, (size[1] - scaled.height) // 2))
    return canvas


def render(source: BrandSource, file_name: str, size: tuple[int, int]) -> bytes:
    """The bytes of brand image `file_name` (its format from its extension) at `size`, made from `source`."""
    extension = file_name.rsplit(".", 1)[-1].lower()
    if extension == "svg":
        return source.data if source.kind == "svg" else _png_in_svg(source, size)
    buffer = io.BytesIO()
    if extension == "ico":
        sides = [side for side in _ICO_SIDES if side < min(size)] + [min(size)]
        fit(source.raster, (sides[-1], sides[-1])).save(buffer, format="ICO", sizes=[(s, s) for s in sides])
    elif extension in ("jpg", "jpeg"):
        image = fit(source.raster, size)
        flat = Image.new("RGB", size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        flat.save(buffer, format="JPEG", quality=92)
    else:
        fit(source.raster, size).save(buffer, format="WEBP" if extension == "webp" else "PNG")
    return buffer.getvalue()


def _png_in_svg(source: BrandSource, size: tuple[int, int]) -> bytes:
    # A PNG logo still gets a favicon.svg: browsers that prefer the SVG icon would show the old one otherwise.
    width, height = size
    encoded = base64.b64encode(render(source, "icon.png", size)).decode()
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><image width="{width}" height="{height}" '
            f'href="data:image/png;base64,{encoded}"/></svg>\n').encode()


def image_size(data: bytes) -> tuple[int, int] | None:
    """The size of an existing brand image of the tree (an SVG's declared size), None when unreadable."""
    if _looks_like_svg(data):
        try:
            root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        except (DefusedXmlException, SafeET.ParseError):
            return None
        width, height = (_LENGTH.match(root.get(side, "")) for side in ("width", "height"))
        return (round(float(width.group(1))), round(float(height.group(1)))) if width and height else None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size if image.width * image.height <= MAX_PIXELS else None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None
