"""Demo data for a first start, so that a fresh `python server.py` has something to vote on."""

from __future__ import annotations

from datetime import date

from services.backends.store import Store

SUBJECTS: tuple[tuple[str, str, bool, tuple[tuple[str, bool, str, str], ...]], ...] = (
    ("Python全栈+人工智能", "Python 是一门简洁而强大的编程语言，适合 Web、数据与 AI。", True, (
        ("骆昊", True, "1980-11-28", "十年以上软件开发与教学经验，擅长 Python 与分布式系统。"),
        ("王大锤", True, "1985-03-12", "喜欢用故事讲算法，课堂气氛轻松。"),
        ("白元芳", False, "1990-07-05", "数据分析与机器学习方向讲师。"),
    )),
    ("全栈软件测试", "自动化测试、性能测试与质量保障。", False, (
        ("赵一鸣", True, "1983-01-20", "测试架构师，主讲接口与性能测试。"),
        ("钱多多", False, "1991-09-09", "专注 Web 自动化测试与持续集成。"),
        ("孙悦", False, "1988-12-01", "擅长把复杂的测试理论讲得简单易懂。"),
    )),
    ("JavaEE+分布式开发", "企业级 Java 开发与微服务架构。", True, (
        ("周杰", True, "1982-06-18", "主讲 Spring 全家桶与微服务治理。"),
        ("吴琼", False, "1987-04-22", "分布式事务与消息队列方向讲师。"),
        ("郑浩", True, "1989-10-30", "热爱开源，课堂以实战项目驱动。"),
    )),
    ("HTML5大前端", "现代前端工程化、跨端开发与可视化。", False, (
        ("冯雪", False, "1992-02-14", "前端工程化与组件库设计。"),
        ("陈晨", True, "1986-08-08", "主讲浏览器原理与性能优化。"),
        ("褚云", False, "1993-05-27", "数据可视化与动画交互方向。"),
    )),
    ("智能物联网+嵌入式", "从单片机到云端的物联网全链路。", False, (
        ("卫东", True, "1981-03-03", "嵌入式 Linux 与驱动开发。"),
        ("蒋琳", False, "1989-11-11", "物联网协议与边缘计算。"),
        ("沈石", True, "1984-07-07", "硬件设计与传感器应用。"),
    )),
)


async def seed_demo_data(store: Store) -> None:
    photo = 0
    for name, intro, is_hot, teachers in SUBJECTS:
        subject = await store.create_subject({"name": name, "intro": intro, "is_hot": is_hot})
        for teacher_name, sex, birth, teacher_intro in teachers:
            photo += 1
            await store.create_teacher({
                "name": teacher_name, "sex": sex, "birth": date.fromisoformat(birth),
                "photo": f"teacher-{photo:02d}.svg", "intro": teacher_intro, "subject": subject.no,
            })
