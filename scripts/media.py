#!/usr/bin/env python3
"""Generates media folders and blueprints for the demo and the benchmark with FFmpeg's
lavfi sources (nothing is downloaded).

    scripts/media.py demo  DIR   # 4 clips of mixed sizes/rates, a song, DIR/blueprint.json
    scripts/media.py bench DIR   # 22 clips 720p30 6-17 s with audio, a 3-minute song,
                                 # DIR/blueprint.json shaped like the backend's (22 x 8 s,
                                 # crossfade after the first move); DIR/blueprint-music.json,
                                 # the same with normalize_audio over a stereo song
    scripts/media.py long DIR N  # the same clips, N moves of 8 s (75: a 10-minute video) over
                                 # a song as long, DIR/blueprint-N.json
"""
import concurrent.futures
import json
import os
import subprocess
import sys


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def clip(path, size, rate, seconds, audio_rate=None, pattern="testsrc2", x264_args=("-preset", "ultrafast")):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    args = ["-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}:duration={seconds}"]
    if audio_rate:
        args += ["-f", "lavfi", "-i", f"sine=frequency=220:sample_rate={audio_rate}:duration={seconds}"]
    args += ["-c:v", "libx264", *x264_args, "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-b:a", "128k"] if audio_rate else ["-an"]
    ffmpeg(*args, path)


def song(path, seconds):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # A beat-like tone: 440 Hz pulsing at 129 bpm, so volume changes are audible.
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
           "-af", "volume='0.4+0.6*gt(mod(t,0.465),0.2)':eval=frame", "-c:a", "libmp3lame", "-b:a", "192k", path)


def music(path, seconds):
    """A stereo song that costs an encoder what music does: a chord and a moving bass line,
    different in each channel, over pink noise pulsing at 130 bpm. The beat tone of `song`
    is one mono sine, which AAC's coder finds unusually hard and loudnorm unusually easy."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bass = "0.3*sin(2*PI*(55+10*mod(floor(t/1.846)\\,4))*t)"
    left = f"0.25*sin(2*PI*220*t)+0.18*sin(2*PI*261.63*t)+0.15*sin(2*PI*329.63*t)+{bass}"
    right = f"0.2*sin(2*PI*220*t+0.5)+0.18*sin(2*PI*329.63*t)+0.15*sin(2*PI*392*t)+{bass}"
    noise = lambda seed: f"anoisesrc=color=pink:amplitude=0.5:r=44100:d={seconds}:seed={seed}"
    ffmpeg("-f", "lavfi", "-i", f"aevalsrc=exprs='{left}|{right}':s=44100:d={seconds}",
           "-f", "lavfi", "-i", noise(1), "-f", "lavfi", "-i", noise(2),
           "-filter_complex", "[1:a][2:a]join=inputs=2:channel_layout=stereo,"
           "volume='0.15+0.85*lt(mod(t,0.4615),0.06)':eval=frame[beat];[0:a][beat]amix=inputs=2:normalize=0,volume=0.5[a]",
           "-map", "[a]", "-c:a", "libmp3lame", "-b:a", "192k", path)


def demo(root):
    clips = [
        ("data/steps/intro.mp4", "1280x720", "30", 8, 48000, "testsrc2"),
        ("data/steps/basic.mp4", "1920x1080", "30000/1001", 6.2, None, "smptehdbars"),
        ("data/steps/turn.mp4", "640x480", "25", 10, 44100, "testsrc"),
        ("data/steps/dip.mp4", "1280x720", "24", 9, 48000, "rgbtestsrc"),
    ]
    # A different pattern per clip, so each move is recognisable in the result.
    for key, size, rate, seconds, audio, pattern in clips:
        clip(os.path.join(root, key), size, rate, seconds, audio, pattern)
    song(os.path.join(root, "data/songs/demo.mp3"), 30)
    moves, start = [], 0.0
    plan = [(0, "cut", 0.0, 1.0), (1, "crossfade", 0.0, 1.0), (2, "fade_black", 2.0, 1.0),
            (3, "crossfade", 1.0, 0.3), (0, "fade_white", 3.0, 1.0), (1, "cut", 1.0, 1.0)]
    for n, (index, transition, trim, volume) in enumerate(plan):
        moves.append({"clip_id": f"move_{n + 1}", "video_path": clips[index][0], "start_time": start,
                      "duration": 4.0, "transition_type": transition, "trim_start": trim, "trim_end": 0.0,
                      "volume_adjustment": volume, "original_duration": 4.0})
        start += 4.0
    blueprint = {"task_id": "demo-0001", "audio_path": "data/songs/demo.mp3", "moves": moves,
                 "total_duration": start,
                 "output_config": {"output_path": "data/output/demo.mp4", "frame_rate": 30,
                                   "video_bitrate": "2M", "audio_bitrate": "128k",
                                   "transition_duration": 0.5, "fade_duration": 0.4, "normalize_audio": True}}
    with open(os.path.join(root, "blueprint.json"), "w") as f:
        json.dump(blueprint, f, indent=2)


CLIPS = 22


def library(root):
    """The 22 clips, made once (two at a time): keys in order."""
    keys, missing = [], []
    for n in range(CLIPS):
        key = f"data/Bachata_steps/step_{n:02d}.mp4"
        seconds = 6 + (n * 5) % 12          # 6..17 s, like the real clips
        path = os.path.join(root, key)
        if not os.path.exists(path):
            missing.append((path, seconds))
        keys.append(key)

    def make(job):
        path, seconds = job
        # Real clips are H.264 High 720p30 with AAC, 3-4 MB, a keyframe every 250 frames
        # (x264's default): noise keeps the bitrate realistic. Written under a temporary
        # name, so an interrupted run never leaves a clip that looks made.
        partial = path + ".partial.mp4"
        clip(partial, "1280x720", "30", seconds, 48000, pattern="testsrc2",
             x264_args=("-preset", "veryfast", "-b:v", "2500k", "-profile:v", "high", "-threads", "1"))
        os.replace(partial, path)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(make, missing))
    return keys


def backend_shaped(root, moves_count, task_id, song_seconds, output, name):
    """`moves_count` moves of 8 s, crossfade into every move after the first, as the backend emits."""
    keys = library(root)
    moves = [{"clip_id": f"move_{n + 1}", "video_path": keys[n % CLIPS], "start_time": 8.0 * n, "duration": 8.0,
              "transition_type": "cut" if n == 0 else "crossfade", "original_duration": 8.0,
              "trim_start": 0.0, "trim_end": 0.0, "volume_adjustment": 1.0} for n in range(moves_count)]
    song_path = os.path.join(root, f"data/songs/song-{song_seconds}.mp3")
    if not os.path.exists(song_path):
        song(song_path + ".partial.mp3", song_seconds)
        os.replace(song_path + ".partial.mp3", song_path)
    blueprint = {"task_id": task_id, "audio_path": f"data/songs/song-{song_seconds}.mp3", "moves": moves,
                 "total_duration": 8.0 * moves_count,
                 "output_config": {"output_path": output, "frame_rate": 30,
                                   "video_bitrate": "2M", "audio_bitrate": "128k",
                                   "transition_duration": 0.5, "fade_duration": 0.3, "normalize_audio": False}}
    with open(os.path.join(root, name), "w") as f:
        json.dump(blueprint, f, indent=2)


def bench(root):
    backend_shaped(root, 22, "bench-22-moves", 200, "data/output/bench.mp4", "blueprint.json")
    # The same blueprint as the backend sends it (normalize_audio on) over a stereo song.
    song_path = os.path.join(root, "data/songs/music-200.mp3")
    if not os.path.exists(song_path):
        music(song_path + ".partial.mp3", 200)
        os.replace(song_path + ".partial.mp3", song_path)
    with open(os.path.join(root, "blueprint.json")) as f:
        blueprint = json.load(f)
    blueprint["audio_path"] = "data/songs/music-200.mp3"
    blueprint["output_config"]["normalize_audio"] = True
    with open(os.path.join(root, "blueprint-music.json"), "w") as f:
        json.dump(blueprint, f, indent=2)


def long(root, moves_count):
    backend_shaped(root, moves_count, f"long-{moves_count}-moves", 8 * moves_count + 10,
                   f"data/output/long-{moves_count}.mp4", f"blueprint-{moves_count}.json")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "long":
        long(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] in ("demo", "bench"):
        {"demo": demo, "bench": bench}[sys.argv[1]](sys.argv[2])
    else:
        sys.exit(__doc__)
