-- Argo CD health check for aerocdn.dev CacheCluster and ContentEdge objects.
-- It reads what the operator reports: status.observedGeneration and the Ready, Progressing
-- and Degraded conditions (and phase Paused). Lua 5.1 subset, as Argo CD runs gopher-lua.
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local reason = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    return reason .. ": " .. c.message
  end
  return reason
end

local status = obj.status
local generation = obj.metadata.generation

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the aerocdn operator to report status"
  return hs
end

if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the aerocdn operator to observe generation " .. tostring(generation)
    .. " (status is of generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local ready = condition(status, "Ready")
local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  if ready ~= nil and ready.status ~= "True" and ready.message ~= nil
      and ready.message ~= "" and ready.message ~= degraded.message then
    hs.message = hs.message .. " (" .. ready.message .. ")"
  end
  return hs
end

if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "spec.paused is true: the aerocdn operator leaves this object alone"
  return hs
end

local progressing = condition(status, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
