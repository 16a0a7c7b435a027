"""The API's wire models: what each route answers, shared by the HTTP routes and the Python SDK.

Only pydantic is imported here, so the SDK stays light. Response models allow unknown keys: a newer server may add
fields without breaking an older client, and the server never drops a field it did not declare.
"""

from toolserver.api.agents import (
    Agent,
    AgentList,
    HumanRequest,
    HumanRequestList,
    Run,
    RunList,
    RunStarted,
    Step,
)
from toolserver.api.base import ErrorBody, ErrorReply, Reply
from toolserver.api.environments import (
    Environment,
    EnvironmentList,
    EnvironmentSteps,
    HubMessage,
    StepReport,
)
from toolserver.api.memory import MemoryCleared, MemoryItem, MemoryItems
from toolserver.api.sessions import (
    Display,
    EgressConnection,
    EgressReport,
    FileEntry,
    FileList,
    PythonError,
    PythonRestarted,
    PythonResult,
    Session,
    SessionEgress,
    SessionLimits,
    SessionList,
    ShellResult,
)
from toolserver.api.snapshots import Forks, Snapshot, SnapshotList
from toolserver.api.system import (
    ApiKey,
    AuditEntry,
    AuditList,
    Health,
    KeyList,
    NewApiKey,
    NodeStats,
    SecretList,
)
from toolserver.api.tools import Tool, ToolCallResult, ToolList, ToolSearch, ToolsImported, WaitingHuman
from toolserver.api.volumes import Volume, VolumeList, VolumeMountInfo

__all__ = [
    "Forks",
    "Snapshot",
    "SnapshotList",
    "Volume",
    "VolumeList",
    "VolumeMountInfo",
    "Agent",
    "AgentList",
    "ApiKey",
    "AuditEntry",
    "AuditList",
    "Display",
    "EgressConnection",
    "EgressReport",
    "Environment",
    "EnvironmentList",
    "HubMessage",
    "EnvironmentSteps",
    "ErrorBody",
    "ErrorReply",
    "FileEntry",
    "FileList",
    "Health",
    "HumanRequest",
    "HumanRequestList",
    "KeyList",
    "MemoryCleared",
    "MemoryItem",
    "MemoryItems",
    "NewApiKey",
    "NodeStats",
    "PythonError",
    "PythonRestarted",
    "PythonResult",
    "Reply",
    "Run",
    "RunList",
    "RunStarted",
    "SecretList",
    "Session",
    "SessionEgress",
    "SessionLimits",
    "SessionList",
    "ShellResult",
    "Step",
    "StepReport",
    "Tool",
    "ToolCallResult",
    "ToolList",
    "ToolSearch",
    "ToolsImported",
    "WaitingHuman",
]
