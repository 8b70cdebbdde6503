@echo off
rem bobosync for Windows Task Scheduler ("At startup", "Run whether user is
rem logged on or not"). Runs the daemon from the virtual environment beside
rem this script, with the .env beside it, whatever the working folder is.
setlocal
set "BOBO_HOME=%~dp0"
set "BOBO_PYTHON=%BOBO_HOME%.venv\Scripts\python.exe"
if not exist "%BOBO_PYTHON%" (
    echo bobosync: no virtual environment at "%BOBO_HOME%.venv". 1>&2
    echo Create it once: py -3.11 -m venv .venv ^&^& .venv\Scripts\pip install -r requirements.txt 1>&2
    exit /b 2
)
cd /d "%BOBO_HOME%"
"%BOBO_PYTHON%" -m bobosync --env-file "%BOBO_HOME%.env" %*
exit /b %ERRORLEVEL%
