# bobosync for Windows Task Scheduler or an administrator's PowerShell.
# Runs the daemon from the virtual environment beside this script, with the
# .env beside it, whatever the working folder is. Extra arguments (--once,
# sync-users, cleanup --hours 24) are passed on.
$ErrorActionPreference = "Stop"
$home_dir = $PSScriptRoot
$python = Join-Path $home_dir ".venv\Scripts\python.exe"
if (-not (Test-Path $python)) {
    Write-Error ("bobosync: no virtual environment at $home_dir\.venv. " +
        "Create it once: py -3.11 -m venv .venv; .venv\Scripts\pip install -r requirements.txt")
    exit 2
}
Set-Location $home_dir
& $python -m bobosync --env-file (Join-Path $home_dir ".env") @args
exit $LASTEXITCODE
