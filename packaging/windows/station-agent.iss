; Inno Setup (6.3 or later) script for the station-agent Windows installer.
; Build on Windows (see README.md here):  ISCC.exe /DAppVersion=0.1.0 packaging\windows\station-agent.iss
;
; What it does:
;   - installs station-agent.exe to %ProgramFiles%\station-agent;
;   - creates %ProgramData%\station-agent (with data\ and logs\) and puts the Windows example
;     configuration there; an existing station.toml, the keys and the journal are never touched;
;   - registers the service with the agent's own `service install` (one way to register: the
;     service name, account, start arguments, recovery actions, SCardSvr dependency, preshutdown
;     timeout and the folder permissions all come from the agent, the same as a scripted install);
;   - does not start the service: the configuration and key files have to be put in place first;
;   - on upgrade, stops the running service (after the card in progress) and re-registers it;
;   - on uninstall, stops and removes the service and the program files, and leaves
;     %ProgramData%\station-agent (configuration, keys, journal, logs) in place.
;
; Service account: NT SERVICE\station-agent unless the installer is run with
;   /ACCOUNT="DOMAIN\gmsa-account$"   (passwordless accounts only: virtual, gMSA or built-in).

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppExe "station-agent.exe"
#define RepoRoot "..\.."

[Setup]
AppId={{6B0E3C52-7A0F-4B8E-9C1D-5F2A7E4D3B91}
AppName=Station Agent
AppVersion={#AppVersion}
AppVerName=Station Agent {#AppVersion}
AppPublisher=station-agent developers
DefaultDirName={autopf}\station-agent
DisableDirPage=yes
DisableProgramGroupPage=yes
PrivilegesRequired=admin
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=Output
OutputBaseFilename=station-agent-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
SetupLogging=yes
UninstallDisplayIcon={app}\{#AppExe}
; The service is stopped by the [Code] below, not by the Restart Manager.
CloseApplications=no
RestartApplications=no

[Dirs]
; Permissions are set by `station-agent service install` (icacls), once the service account exists.
Name: "{commonappdata}\station-agent"; Flags: uninsneveruninstall
Name: "{commonappdata}\station-agent\keys"; Flags: uninsneveruninstall
Name: "{commonappdata}\station-agent\data"; Flags: uninsneveruninstall
Name: "{commonappdata}\station-agent\logs"; Flags: uninsneveruninstall

[Files]
Source: "{#RepoRoot}\target\release\{#AppExe}"; DestDir: "{app}"; Flags: ignoreversion
Source: "{#RepoRoot}\README.md"; DestDir: "{app}"; Flags: ignoreversion
Source: "{#RepoRoot}\docs\operator.md"; DestDir: "{app}"; Flags: ignoreversion
; The example is refreshed on upgrade; station.toml itself is IT's and is never shipped.
Source: "station.example.toml"; DestDir: "{commonappdata}\station-agent"; Flags: ignoreversion uninsneveruninstall

[Code]
const
  DefaultAccount = 'NT SERVICE\station-agent';

{ Runs station-agent.exe with Params, capturing what it prints; returns its exit code. }
function RunAgent(const Exe, Params: String; var Output: AnsiString): Integer;
var
  ResultCode: Integer;
  OutFile: String;
begin
  OutFile := ExpandConstant('{tmp}\station-agent-service.txt');
  DeleteFile(OutFile);
  if not Exec(ExpandConstant('{cmd}'),
              '/C ""' + Exe + '" ' + Params + ' > "' + OutFile + '" 2>&1"',
              '', SW_HIDE, ewWaitUntilTerminated, ResultCode) then
    ResultCode := -1;
  if not LoadStringFromFile(OutFile, Output) then
    Output := '';
  Log('station-agent ' + Params + ' -> ' + IntToStr(ResultCode) + ': ' + Output);
  Result := ResultCode;
end;

function ConfigFile(): String;
begin
  Result := ExpandConstant('{commonappdata}\station-agent\station.toml');
end;

{ Upgrade: the old service must be stopped (after the card in progress) and removed before its exe is replaced. }
function PrepareToInstall(var NeedsRestart: Boolean): String;
var
  Exe: String;
  Output: AnsiString;
begin
  Result := '';
  Exe := ExpandConstant('{app}\{#AppExe}');
  if FileExists(Exe) then
    if (RunAgent(Exe, 'service uninstall', Output) <> 0) and (Pos('SVC_NOT_INSTALLED', Output) = 0) then
      Result := 'The running station-agent service could not be stopped and removed:' + #13#10 + Output;
end;

procedure CurStepChanged(CurStep: TSetupStep);
var
  Output: AnsiString;
  Account: String;
begin
  if CurStep = ssPostInstall then
  begin
    Account := ExpandConstant('{param:ACCOUNT|' + DefaultAccount + '}');
    if RunAgent(ExpandConstant('{app}\{#AppExe}'),
                'service install --account "' + Account + '" --config "' + ConfigFile() + '"',
                Output) <> 0 then
      SuppressibleMsgBox('The station-agent service could not be registered:' + #13#10 + Output + #13#10 +
                         'Run "station-agent service install" from an Administrator prompt once the cause is fixed.',
                         mbError, MB_OK, IDOK);
  end;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  Output: AnsiString;
begin
  if CurUninstallStep = usUninstall then
    if (RunAgent(ExpandConstant('{app}\{#AppExe}'), 'service uninstall', Output) <> 0) and
       (Pos('SVC_NOT_INSTALLED', Output) = 0) then
      SuppressibleMsgBox('The station-agent service could not be removed:' + #13#10 + Output,
                         mbError, MB_OK, IDOK);
end;
