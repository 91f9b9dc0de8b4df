-- The child half of examples/exec-spawn-fork.lua (the seed's
-- background-job.js): takes one job from the parent, answers, and lets go.
process:on("message", function(job)
    local images = {}
    for i = 1, 3 do
        images[i] = { name = ("%s/img%d.jpg"):format(job.dir, i), resized = true }
    end
    process.send({ task = job.task, dir = job.dir, images = images, pid = process.pid })
end)

-- The parent disconnects when it has the answer; then this child's loop
-- has nothing left and it exits.
process:on("disconnect", function() end)
