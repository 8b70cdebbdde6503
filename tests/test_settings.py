"""Settings: `.env` reading, environment overrides, validation, notices."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
import trustme

import bobosync.settings as settings_module
from bobosync.errors import ConfigError
from bobosync.settings import (
    SETTING_NAMES,
    Settings,
    build_settings,
    default_env_file,
    load_settings,
    make_test_settings,
    mask_url,
    read_env_file,
)

CASES = Path(__file__).resolve().parent / "cases"

REQUIRED = {
    "ATHOC_SERVER_URL": "https://athoc.example.invalid",
    "CLIENT_ID": "bobosync-client",
    "CLIENT_SECRET": "cs-Secret-123",
    "APIUSER": "svc_bobo_sync",
    "PASSWORD": "pw-Secret-456",
    "ORG_CODE": "1234",
}
SECRETS = ("cs-Secret-123", "pw-Secret-456")
CONTROL_CHARACTERS_HINT = "write Windows paths unquoted or in single quotes"


def copy_case(case: str, folder: Path, *extra_lines: str) -> Path:
    """The fixture's bytes as `folder/.env`, then CRLF lines appended."""
    folder.mkdir(parents=True, exist_ok=True)
    env_file = folder / ".env"
    shutil.copyfile(CASES / case, env_file)
    with env_file.open("ab") as stream:
        stream.write("".join(f"{line}\r\n" for line in extra_lines).encode())
    return env_file


def missing_line(name: str, env_file: Path) -> str:
    if name == "APIUSER":
        return (
            f"APIUSER is missing: set APIUSER (or ATHOC_USERNAME) in {env_file};"
            " the USERNAME environment variable is not used (Windows sets it to"
            " the logged-on account)"
        )
    return f"{name} is missing: set it in {env_file} or the process environment"


def lines_of(values: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in values.items()]


def build(
    tmp_path: Path,
    file_values: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    return build_settings(
        {**REQUIRED, **(file_values or {})},
        environ or {},
        env_file=tmp_path / ".env",
        base_dir=tmp_path,
    )


def problems_of(
    tmp_path: Path,
    file_values: dict[str, str],
    environ: dict[str, str] | None = None,
) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, file_values, environ)
    return caught.value.problems


# --- B09, B11, B12: reading the file as written ---------------------------


def test_b09_dollar_signs_are_read_as_written(tmp_path: Path) -> None:
    in_fixture = ("APIUSER", "PASSWORD", "CLIENT_SECRET")
    others = {k: v for k, v in REQUIRED.items() if k not in in_fixture}
    env_file = copy_case("B09_password_dollar.env", tmp_path, *lines_of(others))

    settings = load_settings(env_file, environ={})

    assert settings.api_user == "svc_bobo_sync"
    assert settings.password == "Qx${abc}7$def!"
    assert settings.client_secret == "s3cr${ET}x"


def test_b11_double_quoted_windows_path_is_refused_as_control_characters(
    tmp_path: Path,
) -> None:
    install = tmp_path / "install"
    env_file = copy_case("B11_windows_paths.env", install, *lines_of(REQUIRED))

    with pytest.raises(ConfigError) as caught:
        load_settings(env_file, environ={})

    assert caught.value.problems == [
        f"CSV_DIRECTORY in {env_file} holds control characters"
        r" ('C:\x08obo\new\x0b2'): write Windows paths unquoted or in single quotes"
    ]
    assert sorted(path.name for path in tmp_path.rglob("*")) == [".env", "install"]


def test_b11_unquoted_and_single_quoted_windows_paths_are_read_literally(
    tmp_path: Path,
) -> None:
    file_values = read_env_file(CASES / "B11_windows_paths.env")
    del file_values["CSV_DIRECTORY"]

    settings = build(tmp_path, file_values)

    assert str(settings.processed_directory) == r"C:\bobo\processed"
    assert str(settings.failed_files_directory) == r"C:\bobo\failed"
    assert settings.log_directory == Path(r"\\fileserver\logs\bobo")


@pytest.mark.parametrize(
    "name",
    ["SSL_CERT_PATH", "DB_PATH", "LOG_DIRECTORY", "ORG_CODE", "DUTY_STATUS_FIELD"],
)
def test_b11_every_setting_is_checked_for_control_characters(
    tmp_path: Path, name: str
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(
        ("\r\n".join(lines_of(REQUIRED)) + f'\r\n{name}="C:\\bobo\\new"\r\n').encode()
    )

    with pytest.raises(ConfigError) as caught:
        load_settings(env_file, environ={})

    assert caught.value.problems == [
        f"{name} in {env_file} holds control characters ('C:\\x08obo\\new'):"
        f" {CONTROL_CHARACTERS_HINT}"
    ]


def test_b11_secret_with_control_characters_is_refused_without_its_value(
    tmp_path: Path,
) -> None:
    problems = problems_of(tmp_path, {"PASSWORD": "pw-Secret-456\b"})

    assert problems == [
        f"PASSWORD in {tmp_path / '.env'} holds control characters"
        f" (value not shown): {CONTROL_CHARACTERS_HINT}"
    ]


def test_b12_byte_order_mark_does_not_rename_the_first_key(tmp_path: Path) -> None:
    assert read_env_file(CASES / "B12_env_with_bom.env") == {
        "ATHOC_SERVER_URL": "https://athoc.example.invalid",
        "ORG_CODE": "1234",
        "APIUSER": "svc_bobo_sync",
    }


def test_b12_without_its_first_line_the_server_url_is_named_missing(
    tmp_path: Path,
) -> None:
    content = (CASES / "B12_env_with_bom.env").read_bytes()
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"\xef\xbb\xbf" + content.split(b"\r\n", 1)[1])
    others = {"CLIENT_ID": "c", "CLIENT_SECRET": "s", "PASSWORD": "p"}

    with pytest.raises(ConfigError) as caught:
        load_settings(env_file, environ=others)

    assert caught.value.problems == [missing_line("ATHOC_SERVER_URL", env_file)]


def test_bare_key_line_counts_as_empty(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"NO_PROXY\r\nORG_CODE=1234\r\n")

    assert read_env_file(env_file) == {"NO_PROXY": "", "ORG_CODE": "1234"}


def test_env_file_that_is_not_utf8_is_one_problem_naming_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"PASSWORD=Gr\xfc\xdfe\r\n")

    with pytest.raises(ConfigError) as caught:
        read_env_file(env_file)

    assert caught.value.problems == [
        f"{env_file} is not UTF-8 text: save it as UTF-8 (with or without BOM)"
    ]


# --- B13: where `.env` is found; relative paths ---------------------------


B13_LINES = [
    "CSV_DIRECTORY=in",
    "PROCESSED_DIRECTORY=processed_files",
    "FAILED_FILES_DIRECTORY=failed_files",
    "DB_PATH=bobo.db",
    "LOG_DIRECTORY=logs",
]


def test_b13_relative_paths_resolve_against_the_env_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install, elsewhere = tmp_path / "install", tmp_path / "elsewhere"
    elsewhere.mkdir()
    install.mkdir()
    env_file = install / ".env"
    env_file.write_bytes("\r\n".join(B13_LINES + lines_of(REQUIRED)).encode())
    monkeypatch.chdir(elsewhere)

    settings = load_settings(Path("..") / "install" / ".env", environ={})

    assert settings.env_file == env_file
    assert settings.csv_directory == install / "in"
    assert settings.processed_directory == install / "processed_files"
    assert settings.failed_files_directory == install / "failed_files"
    assert settings.db_path == install / "bobo.db"
    assert settings.log_directory == install / "logs"
    assert list(elsewhere.iterdir()) == []
    assert list(install.iterdir()) == [env_file]


def test_b13_start_up_description_names_env_file_and_every_resolved_path(
    tmp_path: Path,
) -> None:
    settings = build(tmp_path, {"CSV_DIRECTORY": "in", "DB_PATH": "bobo.db"})

    lines = settings.describe()

    assert f".env file: {tmp_path / '.env'}" in lines
    assert f"CSV_DIRECTORY={tmp_path / 'in'}" in lines
    assert f"DB_PATH={tmp_path / 'bobo.db'}" in lines
    assert f"PROCESSED_DIRECTORY={tmp_path / 'processed_files'}" in lines
    assert f"FAILED_FILES_DIRECTORY={tmp_path / 'failed_files'}" in lines
    assert f"LOG_DIRECTORY={tmp_path / 'logs'}" in lines


def test_b13_missing_env_file_given_explicitly_is_one_line_naming_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.env", environ=REQUIRED)

    assert caught.value.problems == [
        f"settings file {tmp_path / 'nope.env'} not found (--env-file)"
    ]


def test_b13_default_env_file_is_beside_the_package_folder() -> None:
    env_file = default_env_file()

    assert env_file.name == ".env"
    assert (env_file.parent / "bobosync" / "settings.py").is_file()


def test_b13_missing_default_env_file_is_allowed_and_working_folder_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install, elsewhere = tmp_path / "install", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("BATCH_SIZE=0\n", encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(settings_module, "default_env_file", lambda: install / ".env")

    settings = load_settings(environ=REQUIRED)

    assert settings.env_file is None
    assert settings.batch_size == 500
    assert settings.log_directory == install / "logs"
    assert ".env file: none found (process environment only)" in settings.describe()


@pytest.mark.parametrize(
    "value",
    [r"C:\bobo\processed", r"\\fileserver\bobo\in", "D:/BoboSync/in", "/srv/bobo"],
)
def test_absolute_and_unc_paths_are_kept_as_written(tmp_path: Path, value: str) -> None:
    settings = build(tmp_path, {"PROCESSED_DIRECTORY": value})

    assert settings.processed_directory == Path(value)


def test_relative_path_with_parent_step_is_normalised(tmp_path: Path) -> None:
    settings = build(tmp_path, {"CSV_DIRECTORY": "../shared/in"})

    assert settings.csv_directory == tmp_path.parent / "shared" / "in"


# --- B14: the environment overrides `.env` --------------------------------


def test_b14_stale_machine_password_overrides_env_with_a_warning_notice(
    tmp_path: Path,
) -> None:
    others = {k: v for k, v in REQUIRED.items() if k != "PASSWORD"}
    env_file = copy_case("B14_env_override.env", tmp_path, *lines_of(others))

    settings = load_settings(env_file, environ={"PASSWORD": "OldPass-2024"})

    assert settings.password == "OldPass-2024"
    assert settings.notices == (
        f"PASSWORD from the process environment overrides the value in {env_file}",
    )
    assert settings.https_proxy == ""
    assert "proxy: none (direct connection)" in settings.describe()
    shown = "\n".join([*settings.notices, *settings.describe(), repr(settings)])
    assert "OldPass-2024" not in shown
    assert "NewPass-2025" not in shown


B14_VARIANTS = [
    pytest.param(
        {"PASSWORD": "NewPass-2025"},
        {"APIUSER": "svc_bobo_sync", "PASSWORD": "NewPass-2025"},
        ("password", "NewPass-2025"),
        [],
        id="same-password",
    ),
    pytest.param(
        {"LOG_LEVEL": "DEBUG"},
        {"APIUSER": "svc_bobo_sync", "LOG_LEVEL": "INFO"},
        ("log_level", "DEBUG"),
        ["LOG_LEVEL"],
        id="log-level-overridden",
    ),
    pytest.param(
        {"LOG_LEVEL": "DEBUG"},
        {"APIUSER": "svc_bobo_sync"},
        ("log_level", "DEBUG"),
        [],
        id="log-level-only-in-environment",
    ),
    pytest.param(
        {"USERNAME": "Administrator"},
        {"APIUSER": "svc_bobo_sync"},
        ("api_user", "svc_bobo_sync"),
        [],
        id="windows-username-ignored",
    ),
    pytest.param(
        {"USERNAME": "Administrator"},
        {"USERNAME": "svc_bobo_sync"},
        ("api_user", "svc_bobo_sync"),
        [],
        id="username-written-in-file",
    ),
    pytest.param(
        {"USERNAME": "Administrator"},
        {"ATHOC_USERNAME": "svc_athoc"},
        ("api_user", "svc_athoc"),
        [],
        id="athoc-username-in-file",
    ),
    pytest.param(
        {"APIUSER": "other.user"},
        {"APIUSER": "svc_bobo_sync"},
        ("api_user", "other.user"),
        ["APIUSER"],
        id="apiuser-overridden",
    ),
]


@pytest.mark.parametrize(
    ("environ", "file_values", "effective", "overridden"), B14_VARIANTS
)
def test_b14_variants_environment_wins_and_overrides_are_named(
    tmp_path: Path,
    environ: dict[str, str],
    file_values: dict[str, str],
    effective: tuple[str, str],
    overridden: list[str],
) -> None:
    base = {k: v for k, v in REQUIRED.items() if k != "APIUSER"}
    settings = build_settings(
        {**base, **file_values},
        environ,
        env_file=tmp_path / ".env",
        base_dir=tmp_path,
    )

    field_name, value = effective
    assert getattr(settings, field_name) == value
    assert list(settings.notices) == [
        f"{name} from the process environment overrides the value in"
        f" {tmp_path / '.env'}"
        for name in overridden
    ]


def test_b14_windows_username_alone_stops_start_up_naming_apiuser(
    tmp_path: Path,
) -> None:
    base = {k: v for k, v in REQUIRED.items() if k != "APIUSER"}

    with pytest.raises(ConfigError) as caught:
        build_settings(
            base,
            {"USERNAME": "Administrator"},
            env_file=tmp_path / ".env",
            base_dir=tmp_path,
        )

    assert caught.value.problems == [missing_line("APIUSER", tmp_path / ".env")]


def test_environment_value_is_validated_and_named_as_from_the_environment(
    tmp_path: Path,
) -> None:
    problems = problems_of(tmp_path, {}, environ={"BATCH_SIZE": "0"})

    assert problems == [
        "BATCH_SIZE from the process environment must be a whole number of"
        " at least 1, got '0'"
    ]


def test_unknown_key_in_env_file_draws_a_notice(tmp_path: Path) -> None:
    settings = build(tmp_path, {"ATHOC_SERVER_UR": "https://typo.invalid"})

    assert settings.notices == (
        f"ATHOC_SERVER_UR in {tmp_path / '.env'} is not a bobosync setting and"
        " is ignored (check its spelling)",
    )


# --- B17, B18, R9: proxies --------------------------------------------------


def test_b17_https_proxy_scheme_draws_a_notice_and_is_kept(tmp_path: Path) -> None:
    env_file = copy_case("B17_proxy_https_scheme.env", tmp_path, *lines_of(REQUIRED))

    settings = load_settings(env_file, environ={})

    assert settings.https_proxy == "https://proxy.corp.example.invalid:8080"
    assert settings.notices == (
        "HTTPS_PROXY uses the https:// scheme"
        " (https://proxy.corp.example.invalid:8080): most corporate proxies"
        " expect http:// even for HTTPS traffic; the value is used as written",
    )


@pytest.mark.parametrize("name", ["HTTP_PROXY", "HTTPS_PROXY"])
def test_b17_proxy_without_scheme_is_used_as_http_with_a_notice(
    tmp_path: Path, name: str
) -> None:
    settings = build(tmp_path, {name: "proxy.corp.example.invalid:8080"})

    assert getattr(settings, name.lower()) == "http://proxy.corp.example.invalid:8080"
    assert settings.notices == (
        f"{name} has no scheme; using http://proxy.corp.example.invalid:8080",
    )


def test_b17_proxy_credentials_are_masked_everywhere(tmp_path: Path) -> None:
    proxy = "http://svc_bobo:P%40ss@proxy.corp.example.invalid:8080"
    settings = build(tmp_path, {"HTTPS_PROXY": proxy})

    assert settings.https_proxy == proxy
    assert (
        "proxy: HTTPS_PROXY=http://svc_bobo:***@proxy.corp.example.invalid:8080"
        in settings.describe()
    )
    shown = "\n".join([*settings.notices, *settings.describe(), repr(settings)])
    assert "P%40ss" not in shown
    assert "P@ss" not in shown


def test_b17_bad_proxy_is_shown_masked_in_its_problem(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, {"HTTPS_PROXY": "socks5://u:S3cret@p:1080"})

    assert problems == [
        f"HTTPS_PROXY in {tmp_path / '.env'} must be a proxy URL such as"
        " http://proxy.example.org:8080, got 'socks5://u:***@p:1080'"
    ]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "http://svc_bobo:P%40ss@host:8080",
            "http://svc_bobo:***@host:8080",
        ),
        ("http://host:8080", "http://host:8080"),
        ("http://svc_bobo@host:8080", "http://svc_bobo@host:8080"),
        ("https://u:p@host/path?q=a@b", "https://u:***@host/path?q=a@b"),
        ("u:p@host:3128", "u:***@host:3128"),
        ("http://u:p:q@host", "http://u:***@host"),
        ("", ""),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_b18c_environment_proxy_overrides_env_file_proxy(tmp_path: Path) -> None:
    old_proxy = "http://old-proxy.corp.example.invalid:3128"
    settings = build(
        tmp_path,
        {"HTTPS_PROXY": "http://proxy-a.corp.example.invalid:8080"},
        environ={"HTTPS_PROXY": old_proxy},
    )

    assert settings.https_proxy == old_proxy
    assert settings.notices == (
        "HTTPS_PROXY from the process environment overrides the value in"
        f" {tmp_path / '.env'}",
    )
    assert f"proxy: HTTPS_PROXY={old_proxy}" in settings.describe()


def test_b18f_description_names_proxies_and_no_proxy(tmp_path: Path) -> None:
    settings = build(
        tmp_path,
        {
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
        },
    )

    assert (
        "proxy: HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9"
        " NO_PROXY=127.0.0.1,localhost"
    ) in settings.describe()


def test_r9_other_proxy_and_ca_variables_are_not_settings(tmp_path: Path) -> None:
    environ = {
        "ALL_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "no_proxy": "*",
        "REQUESTS_CA_BUNDLE": str(tmp_path / "nope.pem"),
        "CURL_CA_BUNDLE": str(tmp_path / "nope.pem"),
    }

    settings = build(tmp_path, environ=environ)

    assert (settings.http_proxy, settings.https_proxy, settings.no_proxy) == (
        "",
        "",
        "",
    )
    assert settings.ssl_cert_path is None
    assert settings.notices == ()
    assert "proxy: none (direct connection)" in settings.describe()


# --- B19, B27: TLS and database notices -----------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def test_b19a_pem_certificate_is_accepted_relative_to_env_folder(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    (tmp_path / "certs").mkdir()
    certificate_authority.cert_pem.write_to_path(str(tmp_path / "certs" / "root.pem"))

    settings = build(tmp_path, {"SSL_CERT_PATH": "certs/root.pem"})

    assert settings.ssl_cert_path == tmp_path / "certs" / "root.pem"


def test_b19b_der_certificate_is_refused_as_not_a_pem_file(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    der_file = tmp_path / "root.cer"
    pem_text = certificate_authority.cert_pem.bytes().decode()
    der_file.write_bytes(ssl.PEM_cert_to_DER_cert(pem_text))

    problems = problems_of(tmp_path, {"SSL_CERT_PATH": str(der_file)})

    assert problems == [
        f"SSL_CERT_PATH in {tmp_path / '.env'} names {str(der_file)!r}, which is"
        " not a PEM file (no -----BEGIN CERTIFICATE----- line): export the CA"
        " certificate as Base-64 encoded X.509"
    ]


def test_b19c_missing_certificate_is_refused_as_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"

    problems = problems_of(tmp_path, {"SSL_CERT_PATH": str(missing)})

    assert problems == [
        f"SSL_CERT_PATH in {tmp_path / '.env'} names {str(missing)!r}, which is"
        " not found"
    ]


def test_b19d_disabled_verification_draws_one_notice(tmp_path: Path) -> None:
    settings = build(tmp_path, {"DISABLE_SSL_VERIFY": "true"})

    assert settings.notices == (
        "TLS certificate verification DISABLED (DISABLE_SSL_VERIFY=true): the"
        " connection to AtHoc can be intercepted; set SSL_CERT_PATH to the"
        " corporate root CA instead",
    )


def test_b27_database_on_a_network_share_draws_a_notice(tmp_path: Path) -> None:
    db_path = r"\\fileserver\bobo\bobo_sync.db"

    settings = build(tmp_path, {"DB_PATH": db_path})

    assert settings.db_path == Path(db_path)
    assert settings.notices == (
        f"DB_PATH {Path(db_path)} is on a network share: SQLite locking is not"
        " reliable on network shares; use a local disk",
    )


# --- every setting: defaults, accepted values, refused values --------------


def test_unset_settings_take_their_defaults_with_paths_under_env_folder(
    tmp_path: Path,
) -> None:
    settings = build(tmp_path)

    assert settings == Settings(
        **{
            name.lower(): value for name, value in REQUIRED.items() if name != "APIUSER"
        },
        api_user="svc_bobo_sync",
        log_directory=tmp_path / "logs",
        csv_directory=tmp_path / "csv_input",
        processed_directory=tmp_path / "processed_files",
        failed_files_directory=tmp_path / "failed_files",
        db_path=tmp_path / "bobo_sync.db",
        env_file=tmp_path / ".env",
    )


@pytest.mark.parametrize("name", list(REQUIRED))
@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_setting_unset_or_empty_is_named_missing(
    tmp_path: Path, name: str, value: str | None
) -> None:
    file_values = {k: v for k, v in REQUIRED.items() if k != name}
    if value is not None:
        file_values[name] = value

    with pytest.raises(ConfigError) as caught:
        build_settings(file_values, {}, env_file=tmp_path / ".env", base_dir=tmp_path)

    assert caught.value.problems == [missing_line(name, tmp_path / ".env")]


def test_every_problem_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build_settings(
            {"BATCH_SIZE": "0", "SYNC_HOUR": "25"},
            {},
            env_file=None,
            base_dir=tmp_path,
        )

    assert [line.split(" ", 1)[0] for line in caught.value.problems] == [
        "ATHOC_SERVER_URL",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "APIUSER",
        "PASSWORD",
        "ORG_CODE",
        "BATCH_SIZE",
        "SYNC_HOUR",
    ]


ACCEPTED = [
    ("ATHOC_SERVER_URL", "https://athoc.example.org/", "https://athoc.example.org"),
    ("ATHOC_SERVER_URL", "http://10.0.0.5:8080//", "http://10.0.0.5:8080"),
    ("CLIENT_ID", "Bobo-Client", "Bobo-Client"),
    ("CLIENT_SECRET", " spaced secret ", " spaced secret "),
    ("APIUSER", " svc_user ", "svc_user"),
    ("PASSWORD", "p@ss word ", "p@ss word "),
    ("ORG_CODE", "5678", "5678"),
    ("SCOPE", "openid profile athoc.iws.web.api", "openid profile athoc.iws.web.api"),
    ("DISABLE_SSL_VERIFY", "false", False),
    ("HTTP_PROXY", "http://proxy:3128", "http://proxy:3128"),
    ("HTTPS_PROXY", "http://proxy:3128", "http://proxy:3128"),
    ("NO_PROXY", "127.0.0.1,localhost", "127.0.0.1,localhost"),
    ("LOG_LEVEL", "debug", "DEBUG"),
    ("LOG_LEVEL", "Warning", "WARNING"),
    ("LOG_PURGE_DAYS", " 7 ", 7),
    ("MOVE_PROCESSED_FILES", "no", False),
    ("PROCESSED_FILES_PURGE_DAYS", "90", 90),
    ("BATCH_SIZE", "1", 1),
    ("SYNC_CHUNK_SIZE", "200", 200),
    ("SYNC_MAPPINGS", "0", False),
    ("SYNC_HOUR", "0", 0),
    ("SYNC_HOUR", "23", 23),
    ("SYNC_RETRY_DAYS", "2", 2),
    ("DUTY_STATUS_FIELD", "Duty-Start", "Duty-Start"),
    ("COLLAR_ID_FIELD", "Staff-No", "Staff-No"),
    ("USER_ATTRIBUTES", " Dept , ,Rank,, ", ("Dept", "Rank")),
    ("AUTO_CLEANUP_HOURS", "0.5", 0.5),
    ("MAX_RETRY_ATTEMPTS", "5", 5),
    ("POLL_INTERVAL_SECONDS", "5", 5.0),
    ("FILE_SETTLE_SECONDS", "0", 0.0),
    ("REQUEST_TIMEOUT_SECONDS", "2.5", 2.5),
    ("CLEANUP_SWEEP_MINUTES", "0", 0.0),
    ("SEARCH_OFFSET_MODE", "PAGE", "page"),
    ("SEARCH_PAGE_SIZE", "250", 250),
    ("ATHOC_DATETIME_FORMAT", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S"),
]


@pytest.mark.parametrize(("name", "value", "expected"), ACCEPTED)
def test_accepted_value_is_converted(
    tmp_path: Path, name: str, value: str, expected: object
) -> None:
    settings = build(tmp_path, {name: value})

    field_name = "api_user" if name == "APIUSER" else name.lower()
    assert getattr(settings, field_name) == expected


@pytest.mark.parametrize(
    "name", ["DISABLE_SSL_VERIFY", "MOVE_PROCESSED_FILES", "SYNC_MAPPINGS"]
)
@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("1", True),
        ("On", True),
        ("false", False),
        ("No", False),
        ("0", False),
        ("OFF", False),
    ],
)
def test_boolean_words_are_accepted_in_any_case(
    tmp_path: Path, name: str, word: str, expected: bool
) -> None:
    assert getattr(build(tmp_path, {name: word}), name.lower()) is expected


WHOLE_AT_LEAST_ONE = "must be a whole number of at least 1"
POSITIVE = "must be a number greater than 0"
FROM_ZERO = "must be a number of 0 or more"
BOOLEAN = "must be true or false (also yes/no, 1/0, on/off)"
URL = "must be an http:// or https:// URL such as https://athoc.example.org"
PROXY = "must be a proxy URL such as http://proxy.example.org:8080"
FORMAT = (
    "must be a strftime format that keeps date and time to the second,"
    " such as %d/%m/%Y %H:%M:%S"
)

REFUSED = [
    ("ATHOC_SERVER_URL", "athoc.example.org", URL),
    ("ATHOC_SERVER_URL", "ftp://athoc.example.org", URL),
    ("ATHOC_SERVER_URL", "https://", URL),
    ("DISABLE_SSL_VERIFY", "maybe", BOOLEAN),
    ("HTTP_PROXY", "socks5://proxy:1080", PROXY),
    ("HTTPS_PROXY", "http://proxy:80a", PROXY),
    ("LOG_LEVEL", "verbose", "must be one of DEBUG, INFO, WARNING, ERROR"),
    ("LOG_PURGE_DAYS", "0", WHOLE_AT_LEAST_ONE),
    ("MOVE_PROCESSED_FILES", "2", BOOLEAN),
    ("PROCESSED_FILES_PURGE_DAYS", "thirty", WHOLE_AT_LEAST_ONE),
    ("BATCH_SIZE", "0", WHOLE_AT_LEAST_ONE),
    ("BATCH_SIZE", "1.5", WHOLE_AT_LEAST_ONE),
    ("SYNC_CHUNK_SIZE", "-5", WHOLE_AT_LEAST_ONE),
    ("SYNC_MAPPINGS", "y", BOOLEAN),
    ("SYNC_HOUR", "24", "must be a whole number from 0 to 23"),
    ("SYNC_HOUR", "-1", "must be a whole number from 0 to 23"),
    ("SYNC_RETRY_DAYS", "0", WHOLE_AT_LEAST_ONE),
    ("AUTO_CLEANUP_HOURS", "0", POSITIVE),
    ("AUTO_CLEANUP_HOURS", "nan", POSITIVE),
    ("MAX_RETRY_ATTEMPTS", "0", WHOLE_AT_LEAST_ONE),
    ("POLL_INTERVAL_SECONDS", "ten", POSITIVE),
    ("POLL_INTERVAL_SECONDS", "-1", POSITIVE),
    ("FILE_SETTLE_SECONDS", "-0.5", FROM_ZERO),
    ("REQUEST_TIMEOUT_SECONDS", "0", POSITIVE),
    ("CLEANUP_SWEEP_MINUTES", "inf", FROM_ZERO),
    ("SEARCH_OFFSET_MODE", "offset", "must be one of auto, record, page"),
    ("SEARCH_PAGE_SIZE", "0", WHOLE_AT_LEAST_ONE),
    ("ATHOC_DATETIME_FORMAT", "%d/%m/%Y %H:%M", FORMAT),
    ("ATHOC_DATETIME_FORMAT", "dd/MM/yyyy HH:mm:ss", FORMAT),
]


@pytest.mark.parametrize(("name", "value", "expected"), REFUSED)
def test_refused_value_is_one_line_with_setting_value_and_expectation(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    problems = problems_of(tmp_path, {name: value})

    assert problems == [f"{name} in {tmp_path / '.env'} {expected}, got {value!r}"]


def test_every_setting_is_covered_by_the_tables() -> None:
    covered = {name for name, _, _ in ACCEPTED} | {"SSL_CERT_PATH"}
    paths = {
        "LOG_DIRECTORY",
        "CSV_DIRECTORY",
        "PROCESSED_DIRECTORY",
        "DB_PATH",
        "FAILED_FILES_DIRECTORY",
    }

    assert covered | paths | {"ATHOC_USERNAME"} == set(SETTING_NAMES)


# --- secrets and the start-up description ----------------------------------


def test_secrets_never_appear_in_repr_description_or_problems(tmp_path: Path) -> None:
    settings = build(tmp_path)
    with pytest.raises(ConfigError) as caught:
        build(
            tmp_path,
            {"PASSWORD": "pw-Secret-456\n", "CLIENT_SECRET": "\tcs-Secret-123"},
        )

    shown = "\n".join(
        [repr(settings), str(settings), *settings.describe(), str(caught.value)]
    )
    for secret in SECRETS:
        assert secret not in shown
    assert "PASSWORD=***" in settings.describe()
    assert "CLIENT_SECRET=***" in settings.describe()


def test_description_shows_effective_non_secret_settings(tmp_path: Path) -> None:
    lines = build(tmp_path, {"USER_ATTRIBUTES": "Dept,Rank"}).describe()

    assert lines[:2] == [
        f".env file: {tmp_path / '.env'}",
        "proxy: none (direct connection)",
    ]
    for line in [
        "ATHOC_SERVER_URL=https://athoc.example.invalid",
        "APIUSER=svc_bobo_sync",
        "ORG_CODE=1234",
        "DISABLE_SSL_VERIFY=false",
        "SSL_CERT_PATH=(not set)",
        "USER_ATTRIBUTES=Dept,Rank",
        "SEARCH_OFFSET_MODE=auto",
        "ATHOC_DATETIME_FORMAT=%d/%m/%Y %H:%M:%S",
        "AUTO_CLEANUP_HOURS=24",
        "REQUEST_TIMEOUT_SECONDS=30",
    ]:
        assert line in lines


def test_description_says_not_set_for_an_empty_secret(tmp_path: Path) -> None:
    lines = make_test_settings(tmp_path, password="").describe()

    assert "PASSWORD=(not set)" in lines


def test_make_test_settings_puts_folders_under_base_and_applies_overrides(
    tmp_path: Path,
) -> None:
    settings = make_test_settings(tmp_path, batch_size=2, db_path=tmp_path / "x.db")

    assert settings.athoc_server_url == "http://127.0.0.1:1"
    assert settings.csv_directory == tmp_path / "csv_input"
    assert settings.processed_directory == tmp_path / "processed_files"
    assert settings.failed_files_directory == tmp_path / "failed_files"
    assert settings.log_directory == tmp_path / "logs"
    assert settings.batch_size == 2
    assert settings.db_path == tmp_path / "x.db"


def test_env_example_names_every_setting_and_loads_without_notices() -> None:
    example = Path(__file__).resolve().parents[1] / ".env.example"

    written = set(read_env_file(example))
    settings = load_settings(example, environ={})

    assert written == set(SETTING_NAMES) - {"ATHOC_USERNAME"}
    assert settings.notices == ()
