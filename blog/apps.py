from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "blog"
    verbose_name = "Blog content"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

        from . import archives, periodic, signals
        from .models import Category, Comment, Entry

        archives.register()
        periodic.register()

        for model in (Entry, Category):
            uid = f"blog-content-{model.__name__}"
            post_save.connect(signals.content_changed, sender=model, dispatch_uid=f"{uid}-save")
            post_delete.connect(signals.content_changed, sender=model, dispatch_uid=f"{uid}-delete")
        # Comments: only approved ones are shown (spam held for moderation keeps every cache).
        pre_save.connect(signals.comment_saving, sender=Comment, dispatch_uid="blog-content-Comment-saving")
        post_save.connect(signals.comment_changed, sender=Comment, dispatch_uid="blog-content-Comment-save")
        post_delete.connect(signals.comment_changed, sender=Comment, dispatch_uid="blog-content-Comment-delete")
        m2m_changed.connect(signals.content_changed, sender=Entry.categories.through, dispatch_uid="blog-content-m2m")
        # An author's name is shown on their entries.
        user = get_user_model()
        pre_save.connect(signals.author_saving, sender=user, dispatch_uid="blog-author-saving")
        post_save.connect(signals.author_saved, sender=user, dispatch_uid="blog-author-saved")
        pre_delete.connect(signals.author_deleting, sender=user, dispatch_uid="blog-author-deleting")
        post_delete.connect(signals.author_gone, sender=user, dispatch_uid="blog-author-gone")
