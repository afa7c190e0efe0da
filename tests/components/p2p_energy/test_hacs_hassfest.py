"""The integration's metadata passes hassfest's and HACS's validation of custom integrations.

Neither tool runs here (hassfest lives in Home Assistant's source tree, HACS's action needs
GitHub), so their rules are reproduced below, written anew from their published code:
- hassfest, home-assistant/core ``script/hassfest/``: ``manifest.py`` (manifest schema,
  custom-integration ``version``, key order, code owner and diagnostics for gold and up),
  ``quality_scale.py`` (the rule list with ``docs-conditions`` and ``docs-triggers``, the
  ``quality_scale.yaml`` schema, every rule of the declared tier and below met),
  ``translations.py`` (translation keys, no HTML, the sections a custom integration's
  ``translations/en.json`` may hold, services and exceptions fully described),
  ``services.py`` (``services.yaml`` schema, selectors checked by Home Assistant itself, names
  and descriptions in the translations) and ``icons.py`` (``mdi:`` icons, service icons as
  ``{"service": ...}`` since 2024.8).
- HACS, hacs/integration ``custom_components/hacs/utils/validate.py`` (``hacs.json`` and
  integration manifest schemas) and its repository checks (one integration folder,
  ``manifest.json`` present); brand images as Home Assistant 2026.3+ serves them from a
  custom integration's ``brand/`` folder (``homeassistant/components/brands``), which
  replaced the brands-repository check for custom integrations.
A file-level test per tool, plus tests that the validators themselves refuse bad input.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import voluptuous as vol
import yaml
from awesomeversion import AwesomeVersion, AwesomeVersionStrategy
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import selector
from homeassistant.setup import async_setup_component

from custom_components.p2p_energy.const import DOMAIN

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

REPOSITORY = Path(__file__).resolve().parents[3]
PACKAGE = REPOSITORY / "custom_components" / DOMAIN
BRAND = PACKAGE / "brand"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --- hassfest: manifest.py ---------------------------------------------------------------

IOT_CLASSES = [
    "assumed_state",
    "calculated",
    "cloud_polling",
    "cloud_push",
    "local_polling",
    "local_push",
]
INTEGRATION_TYPES = ["device", "entity", "hardware", "helper", "hub", "service", "system"]
QUALITY_SCALES = ["internal", "legacy", "bronze", "silver", "gold", "platinum"]


def _https_url(value: Any) -> str:
    url = vol.Url()(value)
    if not str(url).startswith("https://"):
        raise vol.Invalid("Documentation url is not prefixed with https")
    return str(url)


def _custom_version(value: Any) -> str:
    try:
        AwesomeVersion(
            value,
            ensure_strategy=[
                AwesomeVersionStrategy.CALVER,
                AwesomeVersionStrategy.SEMVER,
                AwesomeVersionStrategy.SIMPLEVER,
                AwesomeVersionStrategy.BUILDVER,
                AwesomeVersionStrategy.PEP440,
            ],
        )
    except Exception as err:
        raise vol.Invalid(f"'{value}' is not a valid version.") from err
    return str(value)


CUSTOM_MANIFEST_SCHEMA = vol.Schema(
    {
        vol.Required("domain"): str,
        vol.Required("name"): str,
        vol.Optional("integration_type"): vol.In(INTEGRATION_TYPES),
        vol.Optional("config_flow"): bool,
        vol.Optional("mqtt"): [str],
        vol.Optional("zeroconf"): list,
        vol.Optional("ssdp"): list,
        vol.Optional("bluetooth"): list,
        vol.Optional("homekit"): dict,
        vol.Optional("dhcp"): list,
        vol.Optional("usb"): list,
        vol.Required("documentation"): _https_url,
        vol.Optional("issue_tracker"): vol.Url(),
        vol.Optional("quality_scale"): vol.In(QUALITY_SCALES),
        vol.Optional("requirements"): [str],
        vol.Optional("dependencies"): [str],
        vol.Optional("after_dependencies"): [str],
        vol.Required("codeowners"): [str],
        vol.Optional("loggers"): [str],
        vol.Optional("disabled"): str,
        vol.Optional("iot_class"): vol.In(IOT_CLASSES),
        vol.Optional("single_config_entry"): bool,
        # Custom integrations only.
        vol.Required("version"): _custom_version,
        vol.Optional("import_executor"): bool,
    }
)


def manifest_problems(manifest: dict[str, Any], folder: Path) -> list[str]:
    """What hassfest's manifest check reports for a custom integration."""
    problems: list[str] = []
    try:
        CUSTOM_MANIFEST_SCHEMA(manifest)
    except vol.Invalid as err:
        problems.append(f"Invalid manifest: {err}")
    if manifest.get("domain") != folder.name:
        problems.append("Domain does not match dir name")
    if "iot_class" not in manifest:
        problems.append("Domain is missing an IoT Class")
    scale = manifest.get("quality_scale")
    if scale in ("gold", "platinum"):
        if not manifest.get("codeowners"):
            problems.append(f"{scale} integration does not have a code owner")
        if not (folder / "diagnostics.py").is_file():
            problems.append(f"{scale} integration does not implement diagnostics")
    keys = list(manifest)
    expected = sorted(keys, key=lambda key: {"domain": ".domain", "name": ".name"}.get(key, key))
    if keys != expected:
        problems.append("Manifest keys are not sorted correctly: domain, name, then alphabetical")
    return problems


# --- hassfest: quality_scale.py ----------------------------------------------------------

QUALITY_RULES: dict[str, list[str]] = {
    "bronze": [
        "action-setup",
        "appropriate-polling",
        "brands",
        "common-modules",
        "config-flow",
        "config-flow-test-coverage",
        "dependency-transparency",
        "docs-actions",
        "docs-conditions",
        "docs-high-level-description",
        "docs-installation-instructions",
        "docs-removal-instructions",
        "docs-triggers",
        "entity-event-setup",
        "entity-unique-id",
        "has-entity-name",
        "runtime-data",
        "test-before-configure",
        "test-before-setup",
        "unique-config-entry",
    ],
    "silver": [
        "action-exceptions",
        "config-entry-unloading",
        "docs-configuration-parameters",
        "docs-installation-parameters",
        "entity-unavailable",
        "integration-owner",
        "log-when-unavailable",
        "parallel-updates",
        "reauthentication-flow",
        "test-coverage",
    ],
    "gold": [
        "devices",
        "diagnostics",
        "discovery",
        "discovery-update-info",
        "docs-data-update",
        "docs-examples",
        "docs-known-limitations",
        "docs-supported-devices",
        "docs-supported-functions",
        "docs-troubleshooting",
        "docs-use-cases",
        "dynamic-devices",
        "entity-category",
        "entity-device-class",
        "entity-disabled-by-default",
        "entity-translations",
        "exception-translations",
        "icon-translations",
        "reconfiguration-flow",
        "repair-issues",
        "stale-devices",
    ],
    "platinum": ["async-dependency", "inject-websession", "strict-typing"],
}
ALL_RULES = [rule for rules in QUALITY_RULES.values() for rule in rules]

QUALITY_SCALE_SCHEMA = vol.Schema(
    {
        vol.Required("rules"): vol.Schema(
            {
                vol.Optional(rule): vol.Any(
                    vol.In(["todo", "done"]),
                    vol.Schema(
                        {
                            vol.Required("status"): vol.In(["todo", "done"]),
                            vol.Optional("comment"): str,
                        }
                    ),
                    vol.Schema({vol.Required("status"): "exempt", vol.Required("comment"): str}),
                )
                for rule in ALL_RULES
            }
        )
    }
)


def quality_scale_problems(assessment: dict[str, Any], declared: str) -> list[str]:
    """Schema errors, then the rules of ``declared`` and the tiers below it not met."""
    try:
        QUALITY_SCALE_SCHEMA(assessment)
    except vol.Invalid as err:
        return [f"Invalid quality_scale.yaml: {err}"]
    met = {
        rule
        for rule, value in assessment["rules"].items()
        if (value["status"] if isinstance(value, dict) else value) in ("done", "exempt")
    }
    problems = []
    for tier, rules in QUALITY_RULES.items():
        if missing := sorted(set(rules) - met):
            problems.append(f"tier {tier} requires: {', '.join(missing)}")
        if tier == declared:
            break
    return problems


# --- hassfest: translations.py, services.py, icons.py ------------------------------------

RE_TRANSLATION_KEY = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")
RE_REFERENCE = re.compile(r"\[%key:[^%]+%\]")


def translation_key(value: Any) -> str:
    if not isinstance(value, str) or not RE_TRANSLATION_KEY.match(value):
        raise vol.Invalid(f"Invalid translation key '{value}', need [a-z0-9-_]+ without '--'")
    return value


def translation_value(value: Any) -> str:
    """Text of a custom integration: plain, no HTML, no core-only [%key:...%] references."""
    text = cv.string_with_no_html(value)
    if not text.strip():
        raise vol.Invalid("the string is empty")
    if RE_REFERENCE.search(text):
        raise vol.Invalid("custom integrations cannot use [%key:...%] references")
    return str(text)


def keyed(value_schema: Any) -> Any:
    return cv.schema_with_slug_keys(value_schema, slug_validator=translation_key)


STEP = {
    vol.Optional("title"): translation_value,
    vol.Optional("description"): translation_value,
    vol.Optional("data"): keyed(translation_value),
    vol.Optional("data_description"): keyed(translation_value),
    vol.Optional("menu_options"): keyed(translation_value),
    vol.Optional("submit"): translation_value,
    vol.Optional("sections"): keyed(
        {
            vol.Optional("name"): translation_value,
            vol.Optional("description"): translation_value,
            vol.Optional("data"): keyed(translation_value),
            vol.Optional("data_description"): keyed(translation_value),
        }
    ),
}
FLOW = {
    vol.Optional("flow_title"): translation_value,
    vol.Optional("step"): keyed(STEP),
    vol.Optional("error"): keyed(translation_value),
    vol.Optional("abort"): keyed(translation_value),
    vol.Optional("progress"): keyed(translation_value),
    vol.Optional("create_entry"): keyed(translation_value),
}
TRANSLATIONS_SCHEMA = vol.Schema(
    {
        vol.Optional("title"): translation_value,
        vol.Optional("config"): FLOW,
        vol.Optional("config_subentries"): keyed(
            {
                **FLOW,
                vol.Required("entry_type"): translation_value,
                vol.Optional("initiate_flow"): keyed(translation_value),
            }
        ),
        vol.Optional("options"): FLOW,
        vol.Optional("selector"): keyed(
            {
                vol.Optional("options"): keyed(translation_value),
                vol.Optional("unit_of_measurement"): keyed(translation_value),
                vol.Optional("fields"): keyed(translation_value),
                vol.Optional("choices"): keyed(translation_value),
            }
        ),
        vol.Optional("entity"): cv.schema_with_slug_keys(
            keyed(
                {
                    vol.Optional("name"): translation_value,
                    vol.Optional("state"): keyed(translation_value),
                    vol.Optional("state_attributes"): keyed(
                        {
                            vol.Optional("name"): translation_value,
                            vol.Optional("state"): keyed(translation_value),
                        }
                    ),
                    vol.Optional("unit_of_measurement"): translation_value,
                }
            ),
            slug_validator=cv.slug,
        ),
        vol.Optional("device"): keyed({vol.Required("name"): translation_value}),
        vol.Optional("exceptions"): keyed({vol.Required("message"): translation_value}),
        vol.Optional("issues"): keyed(
            vol.All(
                {
                    vol.Required("title"): translation_value,
                    vol.Optional("description"): translation_value,
                    vol.Optional("fix_flow"): FLOW,
                },
                cv.has_at_least_one_key("description", "fix_flow"),
            )
        ),
        vol.Optional("services"): keyed(
            {
                vol.Required("name"): translation_value,
                vol.Required("description"): translation_value,
                vol.Optional("fields"): keyed(
                    {
                        vol.Required("name"): translation_value,
                        vol.Required("description"): translation_value,
                        vol.Optional("example"): translation_value,
                    }
                ),
                vol.Optional("sections"): keyed(
                    {
                        vol.Required("name"): translation_value,
                        vol.Optional("description"): translation_value,
                    }
                ),
            }
        ),
    }
)

SERVICE_FIELD = vol.Schema(
    {
        vol.Optional("name"): str,
        vol.Optional("description"): str,
        vol.Optional("example"): vol.Any(bool, int, float, str, list, dict),
        vol.Optional("default"): object,
        vol.Optional("required"): bool,
        vol.Optional("advanced"): bool,
        vol.Optional("selector"): selector.validate_selector,
        vol.Optional("filter"): dict,
    }
)
SERVICES_SCHEMA = vol.Schema(
    {
        cv.slug: vol.Any(
            None,
            vol.Schema(
                {
                    vol.Optional("name"): str,
                    vol.Optional("description"): str,
                    vol.Optional("target"): vol.Any(selector.TargetSelector.CONFIG_SCHEMA, None),
                    vol.Optional("fields"): vol.Schema({str: SERVICE_FIELD}),
                }
            ),
        )
    }
)


def services_problems(services: dict[str, Any], strings: dict[str, Any]) -> list[str]:
    """hassfest's services.yaml check: valid, and every name and description translated."""
    try:
        SERVICES_SCHEMA(services)
    except vol.Invalid as err:
        return [f"Invalid services.yaml: {err}"]
    problems = []
    translated = strings.get("services", {})
    for name, service in services.items():
        text = translated.get(name, {})
        for key in ("name", "description"):
            if key not in text and key not in (service or {}):
                problems.append(f"Service {name} has no {key}")
        for field, spec in ((service or {}).get("fields") or {}).items():
            field_text = text.get("fields", {}).get(field, {})
            for key in ("name", "description"):
                if key not in field_text and key not in spec:
                    problems.append(f"Service {name} field {field} has no {key}")
    return problems


def mdi_icon(value: Any) -> str:
    icon = cv.string_with_no_html(value)
    if not str(icon).startswith("mdi:"):
        raise vol.Invalid("The icon needs to be from Material Design Icons and start with `mdi:`")
    return str(icon)


ICONS_SCHEMA = vol.Schema(
    {
        vol.Optional("config"): dict,
        vol.Optional("options"): dict,
        vol.Optional("issues"): dict,
        vol.Optional("services"): keyed(
            {vol.Required("service"): mdi_icon, vol.Optional("sections"): keyed(mdi_icon)}
        ),
        vol.Optional("entity"): cv.schema_with_slug_keys(
            keyed(
                {
                    vol.Optional("default"): mdi_icon,
                    vol.Optional("state"): keyed(mdi_icon),
                    vol.Optional("range"): {vol.Coerce(float): mdi_icon},
                    vol.Optional("state_attributes"): keyed(
                        {vol.Optional("default"): mdi_icon, vol.Optional("state"): keyed(mdi_icon)}
                    ),
                }
            ),
            slug_validator=cv.slug,
        ),
    }
)


# --- HACS ---------------------------------------------------------------------------------

HACS_JSON_SCHEMA = vol.Schema(
    {
        vol.Optional("content_in_root"): bool,
        vol.Optional("country"): vol.Any(str, [str]),
        vol.Optional("filename"): str,
        vol.Optional("hacs"): str,
        vol.Optional("hide_default_branch"): bool,
        vol.Optional("homeassistant"): str,
        vol.Optional("persistent_directory"): str,
        vol.Optional("render_readme"): bool,
        vol.Optional("zip_release"): bool,
        vol.Required("name"): str,
    },
    extra=vol.PREVENT_EXTRA,
)
HACS_MANIFEST_SCHEMA = vol.Schema(
    {
        vol.Required("codeowners"): list,
        vol.Required("documentation"): cv.url,
        vol.Required("domain"): str,
        vol.Required("issue_tracker"): cv.url,
        vol.Required("name"): str,
        vol.Required("version"): vol.Coerce(AwesomeVersion),
    },
    extra=vol.ALLOW_EXTRA,
)
# Home Assistant's brands integration (2026.3+) serves these from a custom integration's
# brand/ folder; icon.png is the one every other image falls back to.
BRAND_IMAGES = {
    "icon.png": 256,
    "icon@2x.png": 512,
    "dark_icon.png": 256,
    "dark_icon@2x.png": 512,
    "logo.png": None,
    "logo@2x.png": None,
    "dark_logo.png": None,
    "dark_logo@2x.png": None,
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first chunk after the signature)."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def brand_problems(folder: Path) -> list[str]:
    problems = []
    if not (folder / "icon.png").is_file():
        return ["brand/icon.png is missing"]
    for path in sorted(folder.iterdir()):
        if path.name not in BRAND_IMAGES:
            problems.append(f"brand/{path.name} is not a brand image name")
            continue
        try:
            width, height = png_size(path.read_bytes())
        except ValueError as err:
            problems.append(f"brand/{path.name}: {err}")
            continue
        side = BRAND_IMAGES[path.name]
        if side is not None and (width, height) != (side, side):
            problems.append(f"brand/{path.name} is {width}x{height}, needs {side}x{side}")
    return problems


# --- the files themselves -----------------------------------------------------------------

MANIFEST: dict[str, Any] = _json(PACKAGE / "manifest.json")
STRINGS: dict[str, Any] = _json(PACKAGE / "translations" / "en.json")


def test_manifest_passes_hassfest() -> None:
    assert manifest_problems(MANIFEST, PACKAGE) == []


def test_quality_scale_meets_the_declared_tier() -> None:
    assessment = yaml.safe_load((PACKAGE / "quality_scale.yaml").read_text(encoding="utf-8"))
    assert quality_scale_problems(assessment, MANIFEST["quality_scale"]) == []
    # Every current rule is assessed, none unknown (the schema refuses unknown ones).
    assert set(assessment["rules"]) == set(ALL_RULES)


def test_translations_pass_hassfest() -> None:
    TRANSLATIONS_SCHEMA(STRINGS)


def test_services_pass_hassfest() -> None:
    services = yaml.safe_load((PACKAGE / "services.yaml").read_text(encoding="utf-8"))
    assert services_problems(services, STRINGS) == []


def test_icons_pass_hassfest() -> None:
    ICONS_SCHEMA(_json(PACKAGE / "icons.json"))


def test_repository_passes_hacs() -> None:
    hacs = HACS_JSON_SCHEMA(_json(REPOSITORY / "hacs.json"))
    HACS_MANIFEST_SCHEMA(MANIFEST)
    # HACS installs the one folder under custom_components/.
    folders = [p for p in (REPOSITORY / "custom_components").iterdir() if p.is_dir()]
    assert [p.name for p in folders if p.name != "__pycache__"] == [DOMAIN]
    # The minimum it states is the oldest release the tests run on (requirements_test.txt).
    pinned = re.search(
        r"^homeassistant==(\S+)$",
        (REPOSITORY / "requirements_test.txt").read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    assert pinned is not None
    oldest = AwesomeVersion(pinned.group(1))
    assert AwesomeVersion(hacs["homeassistant"]) <= oldest
    assert AwesomeVersion(hacs["homeassistant"]).section(1) == oldest.section(1)


def test_brand_images() -> None:
    assert brand_problems(BRAND) == []
    assert png_size((BRAND / "icon@2x.png").read_bytes()) == (512, 512)


def test_brand_images_are_what_the_drawing_script_draws() -> None:
    """scripts/draw-brand-icon made the committed images (compared pixel by pixel, since
    Pillow's encoder and resampler may differ slightly between versions)."""
    image_module = pytest.importorskip("PIL.Image")
    spec = importlib.util.spec_from_loader(
        "draw_brand_icon",
        importlib.machinery.SourceFileLoader(
            "draw_brand_icon", str(REPOSITORY / "scripts" / "draw-brand-icon")
        ),
    )
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name, size in script.SIZES.items():
        drawn = script.draw(size).convert("RGBA")
        committed = image_module.open(BRAND / name).convert("RGBA")
        assert committed.size == drawn.size == (size, size)
        differences = [
            abs(a - b) for a, b in zip(drawn.tobytes(), committed.tobytes(), strict=True)
        ]
        assert max(differences) <= 8, name
        assert sum(differences) / len(differences) < 0.5, name


async def test_home_assistant_serves_the_brand_icon(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    """Where Home Assistant has the brands integration (2026.3+), it serves our icon."""
    if importlib.util.find_spec("homeassistant.components.brands") is None:
        pytest.skip("this Home Assistant has no brands integration (before 2026.3)")
    assert await async_setup_component(hass, "http", {})
    assert await async_setup_component(hass, "brands", {})
    client = await hass_client()
    for name in ("icon.png", "icon@2x.png"):
        response = await client.get(f"/api/brands/integration/{DOMAIN}/{name}")
        assert response.status == 200, name
        assert await response.read() == (BRAND / name).read_bytes()


# --- the validators refuse what hassfest and HACS refuse ----------------------------------


def test_manifest_validator_refuses_what_hassfest_refuses() -> None:
    broken = {**MANIFEST, "version": "not a version", "documentation": "http://example.com"}
    del broken["iot_class"]
    problems = manifest_problems(broken, PACKAGE)
    assert any("Invalid manifest" in problem for problem in problems)
    assert "Domain is missing an IoT Class" in problems
    reordered = {"name": MANIFEST["name"], **MANIFEST}
    assert manifest_problems(reordered, PACKAGE)[-1].startswith("Manifest keys are not sorted")
    assert manifest_problems(MANIFEST, PACKAGE.parent) == [
        "Domain does not match dir name",
        "platinum integration does not implement diagnostics",
    ]


def test_quality_scale_validator_refuses_missing_and_unexplained_rules() -> None:
    rules: dict[str, Any] = dict.fromkeys(ALL_RULES, "done")
    assert quality_scale_problems({"rules": rules}, "platinum") == []
    del rules["docs-triggers"]
    assert quality_scale_problems({"rules": rules}, "bronze") == [
        "tier bronze requires: docs-triggers"
    ]
    rules["docs-triggers"] = {"status": "exempt"}
    assert quality_scale_problems({"rules": rules}, "bronze")[0].startswith("Invalid")
    assert quality_scale_problems({"rules": {**rules, "made-up": "done"}}, "bronze")


def test_translation_validators_refuse_bad_strings() -> None:
    with pytest.raises(vol.Invalid):
        TRANSLATIONS_SCHEMA({"exceptions": {"Bad_Key": {"message": "x"}}})
    with pytest.raises(vol.Invalid):
        TRANSLATIONS_SCHEMA({"exceptions": {"key": {"message": "<b>bold</b>"}}})
    with pytest.raises(vol.Invalid):
        TRANSLATIONS_SCHEMA({"issues": {"key": {"title": "[%key:common::x%]"}}})
    with pytest.raises(vol.Invalid):
        TRANSLATIONS_SCHEMA({"issues": {"key": {"title": "no description"}}})
    assert services_problems({"pay_bill": {"fields": {"device_id": {}}}}, {}) == [
        "Service pay_bill has no name",
        "Service pay_bill has no description",
        "Service pay_bill field device_id has no name",
        "Service pay_bill field device_id has no description",
    ]
    assert services_problems({"x": {"fields": {"f": {"selector": {"nope": {}}}}}}, {})
    with pytest.raises(vol.Invalid):
        ICONS_SCHEMA({"services": {"pay_bill": "mdi:cash"}})
    with pytest.raises(vol.Invalid):
        ICONS_SCHEMA({"entity": {"sensor": {"price": {"default": "cash"}}}})


def test_hacs_and_brand_validators_refuse_bad_input(tmp_path: Path) -> None:
    with pytest.raises(vol.Invalid):
        HACS_JSON_SCHEMA({"name": "x", "unknown": True})
    with pytest.raises(vol.Invalid):
        HACS_MANIFEST_SCHEMA({k: v for k, v in MANIFEST.items() if k != "issue_tracker"})
    assert brand_problems(tmp_path) == ["brand/icon.png is missing"]
    small = (BRAND / "icon.png").read_bytes()
    (tmp_path / "icon.png").write_bytes(small)
    (tmp_path / "icon@2x.png").write_bytes(small)
    (tmp_path / "banner.png").write_bytes(small)
    assert brand_problems(tmp_path) == [
        "brand/banner.png is not a brand image name",
        "brand/icon@2x.png is 256x256, needs 512x512",
    ]
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(30))
