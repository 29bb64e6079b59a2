-- Argo CD health check for aigate.dev/AIDeployment.
--
-- Plain Lua 5.1 (Argo CD evaluates health scripts with gopher-lua): no goto, no integer
-- division, no string methods beyond 5.1's. Reads only metadata.generation and status.
--
--   spec change not yet observed by the operator      -> Progressing
--   AwaitingApproval, Paused (a person must act)       -> Suspended
--   Pending, Deploying, Progressing, Promoting,
--   Verifying (post-promotion watch)                   -> Progressing
--   Stable                                             -> Healthy
--   RollingBack, RolledBack, Failed                    -> Degraded
--
-- The message is that of the most relevant kstatus condition: Stalled if True, else
-- Reconciling if True, else Ready, so Argo CD shows the operator's own words (which
-- annotation is missing, which metric breached, what a person should do).

local PHASE_HEALTH = {
  Pending = "Progressing",
  AwaitingApproval = "Suspended",
  Deploying = "Progressing",
  Progressing = "Progressing",
  Paused = "Suspended",
  Promoting = "Progressing",
  Verifying = "Progressing",
  Stable = "Healthy",
  RollingBack = "Degraded",
  RolledBack = "Degraded",
  Failed = "Degraded",
}

local function find_condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

local function relevant_message(conditions)
  local stalled = find_condition(conditions, "Stalled")
  if is_true(stalled) and stalled.message ~= nil and stalled.message ~= "" then
    return stalled.message
  end
  local reconciling = find_condition(conditions, "Reconciling")
  if is_true(reconciling) and reconciling.message ~= nil and reconciling.message ~= "" then
    return reconciling.message
  end
  local ready = find_condition(conditions, "Ready")
  if ready ~= nil and ready.message ~= nil then
    return ready.message
  end
  return ""
end

local hs = {}
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

-- Until the operator has written a status for this generation, whatever status there is
-- describes an older spec: it says nothing about what was just synced.
if status == nil or status.observedGeneration == nil or status.observedGeneration ~= generation then
  hs.status = "Progressing"
  local observed = "none"
  if status ~= nil and status.observedGeneration ~= nil then
    observed = tostring(status.observedGeneration)
  end
  hs.message = "waiting for the aigate operator to observe generation " .. tostring(generation) ..
    " (observed: " .. observed .. ")"
  return hs
end

local phase = status.phase
local health = nil
if phase ~= nil then
  health = PHASE_HEALTH[phase]
end
if health == nil then
  -- A phase this script does not know (a newer operator): say so rather than guess.
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase) .. ": update the aigate health check"
  return hs
end

hs.status = health
hs.message = relevant_message(status.conditions)
if hs.message == "" then
  hs.message = "phase " .. phase
end
return hs
